//! `floe sql`: DuckDB SQL over floe tables, locked down unless `--allow-external-access`; without a
//! query, an interactive prompt (from a terminal) or the query from standard input.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use floe::query::SqlOptions;
use floe::Floe;

use super::output::{self, sql::QueryFormat};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// DuckDB SQL over floe tables: NS.TABLE, "NS.TABLE@REF", "NS.TABLE$snapshots|refs|files|history",
    /// floe_runs. Without a query, it is read from standard input. Reads floe's tables only.
    Sql {
        /// The query.
        query: Option<String>,
        /// Output format (parquet needs --out).
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// Output file for --format parquet.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Lift the lockdown: let the query read and write any file, install and load extensions and
        /// change settings (by default it reads floe's tables only).
        #[arg(long)]
        allow_external_access: bool,
        /// The memory DuckDB may use, in MiB (default 1024); what does not fit spills to a temporary
        /// directory.
        #[arg(long, value_name = "N")]
        memory_mb: Option<u64>,
        /// Read every row of tables floe streams (on S3, with deletes or an evolved schema) and leave
        /// all filtering to DuckDB, instead of pushing the WHERE clause into floe's scan.
        #[arg(long)]
        no_pushdown: bool,
    },
}

pub async fn run(floe: &Floe, command: Command) -> floe::Result<ExitCode> {
    let Command::Sql {
        query,
        format,
        out,
        allow_external_access,
        memory_mb,
        no_pushdown,
    } = command;
    let options = SqlOptions {
        allow_external_access,
        memory_mb,
        no_pushdown,
    };
    let query = match query {
        Some(q) => q,
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            repl(floe, format, &options).await?;
            return Ok(ExitCode::SUCCESS);
        }
        None => {
            let mut q = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut q)?;
            q
        }
    };
    let result = floe::query::sql_with(floe, &query, &options).await?;
    output::sql::query(&mut output::stdout(), &result, format, out.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// The interactive SQL prompt. Statements end with `;`; `\history` lists earlier statements (kept
/// in ~/.floe_history across sessions) and `!N` runs statement N again.
async fn repl(floe: &Floe, format: QueryFormat, options: &SqlOptions) -> floe::Result<()> {
    use std::io::{BufRead, Write};
    let out = &mut output::stdout();
    let path = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".floe_history"));
    let mut history: Vec<String> = path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().map(|l| l.replace("\\n", "\n")).collect())
        .unwrap_or_default();
    writeln!(
        out,
        "floe sql: DuckDB SQL over floe tables (NS.TABLE, \"NS.TABLE@REF\", \"NS.TABLE$snapshots\", floe_runs).\n\
         End statements with ;  \\history lists earlier ones, !N runs one again, Ctrl-D quits."
    )?;
    let stdin = std::io::stdin();
    let mut statement = String::new();
    loop {
        write!(out, "{}", if statement.is_empty() { "floe> " } else { "  ..> " })?;
        out.flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            writeln!(out)?;
            break;
        }
        let trimmed = line.trim();
        if statement.is_empty() && trimmed == "\\history" {
            for (i, h) in history.iter().enumerate() {
                writeln!(out, "{:>4}  {}", i + 1, h.replace('\n', " "))?;
            }
            continue;
        }
        if statement.is_empty() && trimmed.starts_with('!') {
            match trimmed[1..]
                .parse::<usize>()
                .ok()
                .and_then(|n| history.get(n.wrapping_sub(1)).cloned())
            {
                Some(h) => statement = h,
                None => {
                    eprintln!("error: no statement {trimmed}");
                    continue;
                }
            }
        } else {
            statement.push_str(&line);
        }
        if !statement.trim_end().ends_with(';') {
            continue;
        }
        let text = statement.trim().to_string();
        statement.clear();
        match floe::query::sql_with(floe, &text, options).await {
            Ok(result) => output::sql::query(out, &result, format, None)?,
            Err(e) => eprintln!("error: {e}"),
        }
        history.push(text.clone());
        if let Some(p) = &path {
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(p) {
                let _ = writeln!(f, "{}", text.replace('\n', "\\n"));
            }
        }
    }
    Ok(())
}
