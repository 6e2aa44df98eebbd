//! A small command-line parser for the benchmark binaries (no clap: the headline demo must
//! build in seconds). Options are `--name value`, `--name=value` or flags; lists are
//! comma-separated; `--help` prints the generated help.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// One option.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The long name, without the dashes.
    pub name: &'static str,
    /// The value's placeholder (`N`, `LIST`...), `None` for a flag.
    pub value: Option<&'static str>,
    /// The default value, shown in the help and used when the option is absent.
    pub default: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

/// A flag.
pub const fn flag(name: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        value: None,
        default: None,
        help,
    }
}

/// An option with a value and a default.
pub const fn opt(
    name: &'static str,
    value: &'static str,
    default: &'static str,
    help: &'static str,
) -> Spec {
    Spec {
        name,
        value: Some(value),
        default: Some(default),
        help,
    }
}

/// An option with a value and no default.
pub const fn opt_none(name: &'static str, value: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        value: Some(value),
        default: None,
        help,
    }
}

/// Why parsing stopped.
#[derive(Debug)]
pub enum ArgsError {
    /// `--help` was given: the help text, for standard output.
    Help(String),
    /// Bad arguments: what is wrong, for standard error.
    Bad(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Help(h) => f.write_str(h),
            ArgsError::Bad(m) => write!(f, "{m} (see --help)"),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Parsed arguments.
#[derive(Debug)]
pub struct Parsed {
    specs: Vec<Spec>,
    values: HashMap<&'static str, String>,
    flags: HashSet<&'static str>,
    /// Arguments that are not options, in order.
    pub positional: Vec<String>,
}

/// The help text for `specs`.
pub fn help(about: &str, usage: &str, specs: &[Spec]) -> String {
    let mut out = format!("{about}\n\nUsage: {usage}\n\nOptions:\n");
    let left = |s: &Spec| match s.value {
        Some(v) => format!("--{} <{v}>", s.name),
        None => format!("--{}", s.name),
    };
    let width = specs
        .iter()
        .map(|s| left(s).len())
        .max()
        .unwrap_or(0)
        .max(6);
    for s in specs {
        let mut line = format!("  {:width$}  {}", left(s), s.help);
        if let Some(d) = s.default {
            line += &format!(" [default: {d}]");
        }
        out += &line;
        out.push('\n');
    }
    out += &format!("  {:width$}  Print this help\n", "--help");
    out
}

/// Parse `args` (without the program name) against `specs`; at most `max_positional`
/// positional arguments are accepted.
pub fn parse(
    about: &str,
    usage: &str,
    specs: &[Spec],
    max_positional: usize,
    args: impl IntoIterator<Item = String>,
) -> Result<Parsed, ArgsError> {
    let mut p = Parsed {
        specs: specs.to_vec(),
        values: HashMap::new(),
        flags: HashSet::new(),
        positional: Vec::new(),
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--help" || a == "-h" {
            return Err(ArgsError::Help(help(about, usage, specs)));
        }
        let Some(body) = a.strip_prefix("--") else {
            if a.starts_with('-') && a.len() > 1 {
                return Err(ArgsError::Bad(format!("unknown option '{a}'")));
            }
            if p.positional.len() >= max_positional {
                return Err(ArgsError::Bad(format!("unexpected argument '{a}'")));
            }
            p.positional.push(a);
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let spec = specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ArgsError::Bad(format!("unknown option '--{name}'")))?;
        match spec.value {
            None => {
                if inline.is_some() {
                    return Err(ArgsError::Bad(format!("--{name} takes no value")));
                }
                p.flags.insert(spec.name);
            }
            Some(v) => {
                let value = match inline {
                    Some(x) => x,
                    None => it
                        .next()
                        .ok_or_else(|| ArgsError::Bad(format!("--{name} needs a value <{v}>")))?,
                };
                p.values.insert(spec.name, value);
            }
        }
    }
    Ok(p)
}

impl Parsed {
    fn spec(&self, name: &str) -> &Spec {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("option --{name} is not declared"))
    }

    /// Was the flag given?
    pub fn flag(&self, name: &str) -> bool {
        let _ = self.spec(name);
        self.flags.contains(name)
    }

    /// The raw value (given or default).
    pub fn raw(&self, name: &str) -> Option<&str> {
        let spec = self.spec(name);
        self.values.get(name).map(String::as_str).or(spec.default)
    }

    /// The value parsed as `T`; `None` if absent with no default.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<Option<T>, ArgsError>
    where
        T::Err: fmt::Display,
    {
        let Some(raw) = self.raw(name) else {
            return Ok(None);
        };
        raw.parse::<T>().map(Some).map_err(|e| {
            ArgsError::Bad(format!(
                "invalid value '{raw}' for --{name} <{}>: {e}",
                self.spec(name).value.unwrap_or("?")
            ))
        })
    }

    /// The value parsed as `T`; the option must have a default or have been given.
    pub fn value<T: FromStr>(&self, name: &str) -> Result<T, ArgsError>
    where
        T::Err: fmt::Display,
    {
        self.get(name)?
            .ok_or_else(|| ArgsError::Bad(format!("--{name} is required")))
    }

    /// A comma-separated list parsed as `T`s (empty if absent with no default).
    pub fn list<T: FromStr>(&self, name: &str) -> Result<Vec<T>, ArgsError>
    where
        T::Err: fmt::Display,
    {
        let Some(raw) = self.raw(name) else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.trim()
                    .parse::<T>()
                    .map_err(|e| ArgsError::Bad(format!("invalid item '{s}' in --{name}: {e}")))
            })
            .collect()
    }
}

/// Run `main`; on `--help` print the help and exit 0; on any error print its `Display`
/// text to standard error and exit 2 for bad arguments, 1 otherwise.
pub fn run(main: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>) {
    match main() {
        Ok(()) => {}
        Err(e) => match e.downcast_ref::<ArgsError>() {
            Some(ArgsError::Help(h)) => {
                print!("{h}");
            }
            Some(bad) => {
                eprintln!("error: {bad}");
                std::process::exit(2);
            }
            None => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: [Spec; 3] = [
        opt("iterations", "N", "100", "round trips"),
        opt_none("sizes", "LIST", "sizes"),
        flag("pin", "pin"),
    ];

    fn p(args: &[&str]) -> Result<Parsed, ArgsError> {
        parse("about", "x", &SPECS, 1, args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn values_flags_lists_and_defaults() {
        let a = p(&["--iterations=5", "--pin", "--sizes", "8,64", "name"]).unwrap();
        assert_eq!(a.value::<u64>("iterations").unwrap(), 5);
        assert!(a.flag("pin"));
        assert_eq!(a.list::<usize>("sizes").unwrap(), vec![8, 64]);
        assert_eq!(a.positional, vec!["name".to_string()]);
        let b = p(&[]).unwrap();
        assert_eq!(b.value::<u64>("iterations").unwrap(), 100);
        assert!(!b.flag("pin"));
        assert!(b.list::<usize>("sizes").unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_an_error_that_names_the_option() {
        let e = p(&["--nope"]).unwrap_err().to_string();
        assert!(e.contains("--nope"), "{e}");
        let e = p(&["--iterations"]).unwrap_err().to_string();
        assert!(e.contains("needs a value"), "{e}");
        let e = p(&["--iterations", "x"])
            .unwrap()
            .value::<u64>("iterations");
        assert!(e.unwrap_err().to_string().contains("invalid value 'x'"));
        let e = p(&["--pin=1"]).unwrap_err().to_string();
        assert!(e.contains("takes no value"), "{e}");
        let e = p(&["a", "b"]).unwrap_err().to_string();
        assert!(e.contains("unexpected argument 'b'"), "{e}");
    }

    #[test]
    fn help_lists_every_option_with_its_default() {
        match p(&["--help"]).unwrap_err() {
            ArgsError::Help(h) => {
                assert!(h.contains("--iterations <N>"));
                assert!(h.contains("[default: 100]"));
                assert!(h.contains("--pin"));
            }
            e => panic!("{e:?}"),
        }
    }
}
