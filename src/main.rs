//! The `floe` command: parse, call the library, print, exit code.

mod cli;

fn main() -> std::process::ExitCode {
    // A benchmark pass that `floe bench` started in a child of this executable: the library runs it.
    if let Some(code) = floe::bench::child_main() {
        return code;
    }
    cli::main()
}
