//! The datasets that the producer generates and the processor reads (`DATASET`), one enum that
//! every binary, the Avro schemas and the per-dataset defaults match on, so that the compiler
//! checks each place names every dataset.

use std::fmt;
use std::str::FromStr;

/// A dataset: its records, its topic's defaults and its outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Dataset {
    /// Seed 000's card payments (and seed 002's realistic profile): bronze, silver, gold,
    /// fraud alerts.
    #[default]
    Transactions,
    /// Seed 001's sensor events: parsed events and their windows.
    Events,
    /// Seeds 003/004's financial transactions: merchant totals and anomalies.
    Financial,
}

impl Dataset {
    /// Every dataset, in the order the help lists them.
    pub const ALL: [Dataset; 3] = [Dataset::Transactions, Dataset::Events, Dataset::Financial];

    /// The name `DATASET` and `--dataset` take.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Transactions => "transactions",
            Dataset::Events => "events",
            Dataset::Financial => "financial",
        }
    }

    /// The datasets' names, comma-separated (for errors).
    pub fn names() -> String {
        Self::ALL.map(Dataset::name).join(", ")
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = String;

    /// A dataset by its name, in any case and with spaces around it ignored.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        Self::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!(
                    "unknown dataset {text:?}: the datasets are {}",
                    Self::names()
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_in_any_case_and_an_unknown_one_lists_them() {
        for d in Dataset::ALL {
            assert_eq!(d.name().parse::<Dataset>(), Ok(d));
            assert_eq!(
                format!(" {} ", d.name().to_uppercase()).parse::<Dataset>(),
                Ok(d)
            );
            assert_eq!(d.to_string(), d.name());
        }
        let e = "nonsense".parse::<Dataset>().unwrap_err();
        assert_eq!(
            e,
            "unknown dataset \"nonsense\": the datasets are transactions, events, financial"
        );
        assert_eq!(Dataset::default(), Dataset::Transactions);
    }
}
