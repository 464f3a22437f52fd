//! What every binary does before it reads its settings: `.env`, logging, and shared value parsers.

use std::path::Path;

/// Loads `.env` from the working directory when present. Variables already set in the process
/// environment win, as with docker compose. Returns the file's path when one was read.
pub fn load_dotenv() -> Result<Option<std::path::PathBuf>, String> {
    let path = Path::new(".env");
    if !path.exists() {
        return Ok(None);
    }
    dotenvy::from_path(path).map_err(|e| format!("cannot read .env: {e}"))?;
    Ok(Some(path.to_path_buf()))
}

/// Logs to stderr, one line per event, level from `RUST_LOG` (default `info`). No colours when
/// stderr is not a terminal, so `docker logs` stays readable.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// A boolean the way the seed's `.env` writes them: true/false, 1/0, yes/no, on/off.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (use true or false)")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn booleans_in_the_seed_forms() {
        for t in ["true", "TRUE", "1", "yes", "on"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "0", "no", "off", ""] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("maybe").unwrap_err().contains("\"maybe\""));
    }
}
