//! `--config FILE`: the server's settings in a TOML file, one key per flag, named as the
//! flag (`max-value-bytes = 1048576`). A flag on the command line or its environment
//! variable overrides the file; the file overrides the defaults. Relative paths in the
//! file are relative to the file's folder. An unknown key, or a value its flag would
//! refuse, stops the server with the file and the key named.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _, ValueHint};

use crate::config::Config;

/// Largest configuration file read (a config file is a page of settings).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The configuration from `args` (the program's name first), the environment and the
/// file `--config` names, in that order of precedence. A usage error (or `--help`) is
/// clap's, to print and exit with; a file that cannot be used is a message.
pub fn load<I, T>(args: I) -> Result<Loaded, LoadError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let command = Config::command();
    // Only to find the file and what the command line and the environment give: a flag
    // whose companion is in the file (`--tls-cert` here, `tls-key` there) is whole only
    // with the file, so the full check waits for it.
    let partial = command.clone().ignore_errors(true).try_get_matches_from(&args);
    let file = partial.ok().and_then(|m| m.get_one::<PathBuf>("config").cloned().map(|f| (f, m)));
    let Some((file, matches)) = file else {
        let matches = command.try_get_matches_from(&args).map_err(LoadError::Usage)?;
        let config = Config::from_arg_matches(&matches).map_err(LoadError::Usage)?;
        return Ok(Loaded { config, overridden: Vec::new() });
    };
    let FromFile { flags, overridden } = from_file(&file, &matches).map_err(LoadError::File)?;
    let mut all = args.clone();
    all.extend(flags);
    let matches = command.clone().try_get_matches_from(&all).map_err(|err| {
        use clap::error::ErrorKind;
        // The command line's own mistake (a bad value of a flag) is the command line's; a
        // missing companion flag may be the file's to give, so it is judged with the file.
        let own = matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
            || command.try_get_matches_from(&args).is_err_and(|alone| {
                alone.kind() == err.kind() && alone.kind() != ErrorKind::MissingRequiredArgument
            });
        if own {
            LoadError::Usage(err)
        } else {
            // Each value was checked alone; what is left is how they combine.
            LoadError::File(format!("{}: {}", file.display(), summary(&err.to_string())))
        }
    })?;
    let config = Config::from_arg_matches(&matches).map_err(LoadError::Usage)?;
    Ok(Loaded { config, overridden })
}

/// A configuration, and what of its file the command line or the environment overrode.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// One line per key of the file that a flag or its environment variable overrode
    /// (logged at start: a unit's `Environment=` can hide a file's setting).
    pub overridden: Vec<String>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The command line itself (or `--help`, `--version`): clap prints and exits.
    #[error("{0}")]
    Usage(clap::Error),
    /// The configuration file.
    #[error("{0}")]
    File(String),
}

/// What a file adds to the command line.
struct FromFile {
    flags: Vec<OsString>,
    overridden: Vec<String>,
}

/// clap's message on one line, without its usage and help hints.
fn summary(text: &str) -> String {
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Usage:") && !l.starts_with("For more"));
    lines.collect::<Vec<_>>().join(" ").trim_start_matches("error: ").to_owned()
}

/// The flags `file` adds: one per key whose flag was given neither on the command line nor
/// in its environment variable.
fn from_file(file: &Path, matches: &ArgMatches) -> Result<FromFile, String> {
    let named = |why: String| format!("{}: {why}", file.display());
    let text = read(file).map_err(named)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let before = e.span().and_then(|span| text.get(..span.start)).unwrap_or_default();
        let line = before.lines().count().max(1);
        named(format!("not valid TOML (line {line}): {}", e.message()))
    })?;
    let command = Config::command();
    let base = file.parent().unwrap_or(Path::new("."));
    let mut extra = Vec::new();
    let mut overridden = Vec::new();
    for (key, value) in &table {
        let arg = command
            .get_arguments()
            .find(|arg| {
                arg.get_long() == Some(key.as_str())
                    && !["config", "help", "version"].contains(&key.as_str())
            })
            .ok_or_else(|| named(unknown(key, &command)))?;
        let id = arg.get_id().as_str();
        let by = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Some(format!("--{key}")),
            Some(ValueSource::EnvVariable) => {
                Some(arg.get_env().map_or_else(String::new, |v| v.to_string_lossy().into_owned()))
            }
            _ => None,
        };
        if let Some(by) = by {
            overridden.push(format!("{}: `{key}` is overridden by {by}", file.display()));
            continue;
        }
        let text = scalar_text(key, value).map_err(named)?;
        let text = match arg.get_value_hint() {
            ValueHint::FilePath | ValueHint::DirPath | ValueHint::AnyPath => {
                let path = Path::new(&text);
                if path.is_relative() {
                    base.join(path).to_string_lossy().into_owned()
                } else {
                    text
                }
            }
            _ => text,
        };
        // Checked as its flag would check it, so the error names the file and the key.
        if let Some(values) = arg.get_value_delimiter().map(|d| text.split(d).collect::<Vec<_>>()) {
            for one in values {
                check(arg, key, one).map_err(named)?;
            }
        } else {
            check(arg, key, &text).map_err(named)?;
        }
        extra.push(OsString::from(format!("--{key}={text}")));
    }
    Ok(FromFile { flags: extra, overridden })
}

fn read(file: &Path) -> Result<String, String> {
    let metadata = std::fs::metadata(file).map_err(|e| format!("cannot read it: {e}"))?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read it: {e}"))
}

/// Checks `value` as the flag of `arg` would (alone: how flags combine is checked after).
fn check(arg: &clap::Arg, key: &str, value: &str) -> Result<(), String> {
    let mut alone = clap::Arg::new("value")
        .long("value")
        .value_parser(arg.get_value_parser().clone())
        .action(clap::ArgAction::Set);
    if let Some(names) = arg.get_value_names() {
        alone = alone.value_names(names.to_vec());
    }
    clap::Command::new("graycast")
        .no_binary_name(true)
        .arg(alone)
        .try_get_matches_from([format!("--value={value}")])
        .map(|_| ())
        .map_err(|e| {
            let said = e.to_string().replace("--value", &format!("--{key}"));
            format!("`{key}`: {}", summary(&said))
        })
}

/// A key's value as its flag takes it: a string, a number, a boolean, or a list of
/// those for the flags that take several (comma separated).
fn scalar_text(key: &str, value: &toml::Value) -> Result<String, String> {
    let one = |value: &toml::Value| match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "`{key}` is a {}; it takes a string, an integer or a boolean",
            other.type_str()
        )),
    };
    match value {
        toml::Value::Array(items) => {
            let items = items.iter().map(one).collect::<Result<Vec<_>, _>>()?;
            if items.iter().any(|item| item.contains(',')) {
                return Err(format!("`{key}`: a list item cannot contain a comma"));
            }
            Ok(items.join(","))
        }
        value => one(value),
    }
}

/// What to say of a key no flag has: the flag it most likely meant.
fn unknown(key: &str, command: &clap::Command) -> String {
    let longs: Vec<&str> = command
        .get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| *long != "config" && *long != "help" && *long != "version")
        .collect();
    let wanted = key.replace('_', "-");
    let nearest = longs.iter().min_by_key(|long| distance(&wanted, long)).copied();
    let hint = match nearest {
        Some(long) if long == wanted => format!("; keys are named as the flags: `{long}`"),
        Some(long) if distance(&wanted, long) <= 3 => format!("; did you mean `{long}`?"),
        _ => String::new(),
    };
    format!("unknown setting `{key}` (the keys are the flags of `graycast --help`){hint}")
}

/// Levenshtein distance, for the suggestion.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let replaced = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = replaced.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("graycast.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn load_with(file: &Path, flags: &[&str]) -> Result<Config, String> {
        let mut args = vec!["graycast".to_owned(), format!("--config={}", file.display())];
        args.extend(flags.iter().map(|f| f.to_string()));
        load(args).map(|loaded| loaded.config).map_err(|e| e.to_string())
    }

    #[test]
    fn the_file_sets_what_no_flag_gives_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "max-value-bytes = 2048\nhistory-retain = 7\nallowed-origins = [\"https://a.example\", \"https://b.example\"]\n\
             data-dir = \"state\"\ndirect-writes = false\nlog-format = \"json\"\n",
        );
        let config = load_with(&file, &["--history-retain", "9"]).unwrap();
        assert_eq!(config.max_value_bytes, 2048);
        assert_eq!(config.history_retain, 9, "the flag wins");
        assert_eq!(config.allowed_origins, ["https://a.example", "https://b.example"]);
        assert_eq!(config.data_dir, dir.path().join("state"), "relative to the file");
        assert!(!config.direct_writes);
        assert_eq!(config.log_format, crate::LogFormat::Json);
        assert_eq!(config.config.as_deref(), Some(file.as_path()));
    }

    #[test]
    fn a_file_that_cannot_be_used_is_refused_with_its_key_named() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("max_value_bytes = 1", "keys are named as the flags: `max-value-bytes`"),
            ("max-valu-bytes = 1", "did you mean `max-value-bytes`?"),
            ("colour = 1", "unknown setting `colour`"),
            ("max-value-bytes = \"lots\"", "`max-value-bytes`: invalid value 'lots'"),
            ("listen = [1, 2]", "invalid value '1,2'"),
            ("workers = 1.5", "`workers` is a float"),
            ("store = \"nosql\"", "`store`: invalid value 'nosql'"),
            ("heartbeat-ms = 1", "`heartbeat-ms`: invalid value '1'"),
            ("config = \"other.toml\"", "unknown setting `config`"),
            ("help = true", "unknown setting `help`"),
            ("tls-cert = \"c.pem\"", "--tls-key"),
            ("[listen]\nport = 1", "`listen` is a table"),
            ("listen = ", "not valid TOML (line 1)"),
            ("history-retain = 1\nlisten = ", "not valid TOML (line 2)"),
            ("log-format = \"jsn\"", "[possible values: text, json]"),
        ] {
            let file = write(dir.path(), text);
            let err = load_with(&file, &[]).expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("graycast.toml"), "{text}: names the file: {err}");
        }
        let missing = dir.path().join("missing.toml");
        let err = load_with(&missing, &[]).expect_err("missing");
        assert!(err.contains("missing.toml: cannot read it"), "{err}");
    }

    #[test]
    fn a_flag_pair_may_be_split_between_the_command_line_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "tls-key = \"key.pem\"\nhistory-retain = 3\n");
        let args = ["graycast".to_owned(), format!("--config={}", file.display())];
        let loaded = load(
            args.iter()
                .cloned()
                .chain(["--tls-cert=c.pem".to_owned(), "--history-retain=4".to_owned()]),
        )
        .unwrap();
        assert_eq!(loaded.config.tls_key, Some(dir.path().join("key.pem")));
        assert_eq!(loaded.config.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(loaded.config.history_retain, 4);
        assert_eq!(loaded.overridden.len(), 1, "{:?}", loaded.overridden);
        assert!(
            loaded.overridden[0].ends_with("`history-retain` is overridden by --history-retain")
        );
        let bad = load(args.iter().cloned().chain(["--listen=nowhere".to_owned()]));
        assert!(
            matches!(bad, Err(LoadError::Usage(ref e)) if e.kind() == clap::error::ErrorKind::ValueValidation),
            "a bad flag is the command line's, not the file's: {bad:?}"
        );
        let help = load(args.iter().cloned().chain(["--help".to_owned()])).expect_err("help");
        assert!(
            matches!(help, LoadError::Usage(ref e) if e.kind() == clap::error::ErrorKind::DisplayHelp)
        );
    }

    #[test]
    fn without_a_file_the_flags_are_read_as_ever() {
        let config = load(["graycast", "--max-value-bytes", "10"]).unwrap().config;
        assert_eq!(config.max_value_bytes, 10);
        assert!(config.config.is_none());
        // Without a file, the command line is checked whole, as ever.
        let err = load(["graycast", "--tls-cert", "c.pem"]).expect_err("needs --tls-key");
        assert!(err.to_string().contains("--tls-key"), "{err}");
        let help = load(["graycast", "--help"]).expect_err("help");
        assert!(
            matches!(help, LoadError::Usage(ref e) if e.kind() == clap::error::ErrorKind::DisplayHelp)
        );
    }
}
