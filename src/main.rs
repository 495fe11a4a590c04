//! The `floe` command: parse, call the library, print, exit code.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
