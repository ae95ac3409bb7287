//! Parameter sweeps: `cargo xtask bench --sweep unfairness=0,1,5,20 --sweep
//! bookmarks=on,off` boots once per combination of the swept values.
//!
//! Every sweep is checked with the contract's parameter table before
//! anything is built or booted ([`Sweep::parse`]): the key must exist (a
//! misspelt one gets the closest suggested), every value must be one the
//! key accepts, no key may be swept twice or also be given as a fixed
//! parameter, and every combination, joined with the fixed parameters,
//! must parse as a whole. Combinations run in order, the first sweep
//! varying slowest.

use std::fmt;

use contract::params::{self, Help, Key, Kind};

use crate::bench::Axis;

/// At most this many boots per sweep: a typo such as `seed=0..1000` should
/// not start a day of boots.
pub const MAX_COMBINATIONS: usize = 64;

/// Keys that select what runs rather than how, which a sweep cannot vary.
const NOT_SWEPT: [Key; 2] = [Key::Mode, Key::Filter];

/// Validated sweeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    axes: Vec<(Key, Vec<String>)>,
}

/// Why a sweep was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepError {
    /// What is wrong, naming the sweep.
    pub error: String,
    /// The key's help from the parameter table, when a key is to blame.
    pub help: Option<String>,
}

impl fmt::Display for SweepError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "bad --sweep: {}", self.error)?;
        if let Some(h) = &self.help {
            writeln!(f, "  {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SweepError {}

fn err(error: String, key: Option<Key>) -> SweepError {
    SweepError {
        error,
        help: key.map(|k| Help(k).to_string()),
    }
}

impl Sweep {
    /// Parses `--sweep` arguments (`key=v1,v2,...`), given the fixed
    /// parameters of every boot (`key=value` words).
    pub fn parse<S: AsRef<str>, P: AsRef<str>>(
        sweeps: &[S],
        fixed: &[P],
    ) -> Result<Sweep, SweepError> {
        let fixed: Vec<&str> = fixed.iter().map(AsRef::as_ref).collect();
        let mut axes: Vec<(Key, Vec<String>)> = Vec::new();
        for s in sweeps {
            let s = s.as_ref();
            let Some((name, values)) = s.split_once('=') else {
                return Err(err(
                    format!("'{s}' is not of the form key=value1,value2,..."),
                    Key::from_name(s),
                ));
            };
            let key = Key::from_name(name).ok_or_else(|| {
                let closest = Key::closest(name);
                err(
                    match closest {
                        Some(c) => format!("unknown parameter '{name}'; did you mean '{c}'?"),
                        None => {
                            format!("unknown parameter '{name}' (`cargo xtask params` lists them)")
                        }
                    },
                    closest,
                )
            })?;
            if NOT_SWEPT.contains(&key) {
                return Err(err(
                    format!(
                        "'{key}' selects what runs and cannot be swept; give it once, e.g. --filter"
                    ),
                    Some(key),
                ));
            }
            if axes.iter().any(|(k, _)| *k == key) {
                return Err(err(format!("'{key}' is swept twice"), Some(key)));
            }
            if fixed
                .iter()
                .any(|w| w.split_once('=').is_some_and(|(k, _)| k == name))
            {
                return Err(err(
                    format!("'{key}' is both swept and given as a parameter after --"),
                    Some(key),
                ));
            }
            let values: Vec<String> = values.split(',').map(str::to_string).collect();
            let kind = key.spec().kind;
            for (i, v) in values.iter().enumerate() {
                if v.is_empty() {
                    return Err(err(format!("'{s}': empty value"), Some(key)));
                }
                if kind.parse(v).is_none() {
                    return Err(err(
                        format!("bad value '{v}' for '{key}': expected {}", kind.expected()),
                        Some(key),
                    ));
                }
                if values[..i].contains(v) {
                    return Err(err(format!("'{s}': value '{v}' given twice"), Some(key)));
                }
                // Booleans: `on` and `1` are the same value twice.
                if kind == Kind::Bool && values[..i].iter().any(|w| kind.parse(w) == kind.parse(v))
                {
                    return Err(err(
                        format!("'{s}': '{v}' repeats an earlier value"),
                        Some(key),
                    ));
                }
            }
            axes.push((key, values));
        }
        let sweep = Sweep { axes };
        let n = sweep.len();
        if n > MAX_COMBINATIONS {
            return Err(err(
                format!("{n} combinations; at most {MAX_COMBINATIONS} boots per run"),
                None,
            ));
        }
        for combo in sweep.combinations() {
            let mut words: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
            words.extend(combo.iter().map(|(k, v)| format!("{k}={v}")));
            let text = words.join(" ");
            if let Err(e) = params::parse(&text) {
                return Err(err(format!("{e} (in the combination: {text})"), e.key()));
            }
        }
        Ok(sweep)
    }

    /// Whether nothing is swept (one boot).
    pub fn is_empty(&self) -> bool {
        self.axes.is_empty()
    }

    /// Number of boots: the product of the value counts (1 without sweeps).
    pub fn len(&self) -> usize {
        self.axes.iter().map(|(_, v)| v.len()).product()
    }

    /// Every combination as `(key, value)` pairs in sweep order, the first
    /// sweep varying slowest.
    pub fn combinations(&self) -> Vec<Vec<(String, String)>> {
        let mut out: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (key, values) in &self.axes {
            out = out
                .into_iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut c = prefix.clone();
                        c.push((key.name().to_string(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        out
    }

    /// The axes, for the results file.
    pub fn axes(&self) -> Vec<Axis> {
        self.axes
            .iter()
            .map(|(k, v)| Axis {
                key: k.name().into(),
                values: v.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(sweeps: &[&str], fixed: &[&str]) -> SweepError {
        Sweep::parse(sweeps, fixed).unwrap_err()
    }

    #[test]
    fn combinations_in_order() {
        let s = Sweep::parse(
            &["unfairness=0,1,5,20", "bookmarks=on,off"],
            &["bench_rounds=3"],
        )
        .unwrap();
        assert_eq!(s.len(), 8);
        let c = s.combinations();
        assert_eq!(c.len(), 8);
        let text: Vec<String> = c
            .iter()
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(text[0], "unfairness=0 bookmarks=on");
        assert_eq!(text[1], "unfairness=0 bookmarks=off");
        assert_eq!(text[7], "unfairness=20 bookmarks=off");
        assert_eq!(s.axes()[0].values, ["0", "1", "5", "20"]);
        let none = Sweep::parse::<&str, &str>(&[], &[]).unwrap();
        assert!(none.is_empty());
        assert_eq!(none.len(), 1);
        assert_eq!(none.combinations(), [Vec::<(String, String)>::new()]);
    }

    #[test]
    fn bad_sweeps_name_what_is_wrong() {
        let e = bad(&["unfairnes=0,1"], &[]);
        assert!(
            e.error.contains("'unfairnes'") && e.error.contains("'unfairness'"),
            "{e}"
        );
        assert!(e.help.unwrap().contains(Key::Unfairness.spec().help));
        let e = bad(&["unfairness=0,x"], &[]);
        assert!(e.error.contains("bad value 'x' for 'unfairness'"), "{e}");
        let e = bad(&["bits=17"], &[]);
        assert!(
            e.error.contains("'17'") && e.error.contains("0..=16"),
            "{e}"
        );
        assert!(
            bad(&["bookmarks=on,off,on"], &[])
                .error
                .contains("given twice")
        );
        assert!(
            bad(&["bookmarks=on,1"], &[])
                .error
                .contains("repeats an earlier value")
        );
        assert!(bad(&["bookmarks=on,"], &[]).error.contains("empty value"));
        assert!(bad(&["bookmarks"], &[]).error.contains("key=value1,value2"));
        assert!(
            bad(&["bookmarks=on", "bookmarks=off"], &[])
                .error
                .contains("swept twice")
        );
        assert!(
            bad(&["bookmarks=on,off"], &["bookmarks=on"])
                .error
                .contains("both swept and given")
        );
        assert!(
            bad(&["mode=test,bench"], &[])
                .error
                .contains("cannot be swept")
        );
        assert!(bad(&["filter=a,b"], &[]).error.contains("cannot be swept"));
        let e = bad(
            &[
                "seed=1,2,3,4,5,6,7,8",
                "hz=100,200,300,400,500,600,700,800,900",
            ],
            &[],
        );
        assert!(e.error.contains("72 combinations"), "{e}");
        // A fixed parameter that is itself bad is caught with the sweep.
        let e = bad(&["bookmarks=on,off"], &["hz=5"]);
        assert!(e.error.contains("'hz'"), "{e}");
    }
}
