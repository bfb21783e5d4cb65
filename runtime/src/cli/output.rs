//! How the commands print what they show: `--json` hands scripts the server's answer
//! unchanged; without it the answer is read into the server's own types and rendered for
//! people, with sizes, times and long values made readable. Never changes what `--json`
//! prints: scripts depend on it being the API's answer as it is, pretty-printed.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Args;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::channels::terminal::human_size;

/// The `--json` flag of the commands that show something.
#[derive(Args)]
pub struct Format {
    /// Print the server's answer as JSON, unchanged, for scripts.
    #[arg(long)]
    json: bool,
}

impl Format {
    /// Prints `answer` as JSON with `--json`; otherwise reads it as a `T` (the server's own
    /// type for `what`) and prints the text `render` makes of it.
    pub fn print<T: DeserializeOwned>(
        &self,
        answer: Value,
        what: &str,
        render: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            return print_json(&answer);
        }
        let typed: T = serde_json::from_value(answer).with_context(|| {
            format!(
                "the server's {what} does not decode (is it another Switchboard version? --json shows it as it is)"
            )
        })?;
        print_text(&render(&typed))
    }
}

/// Prints `text` on stdout. A closed pipe comes back as an error, which `main` treats as the
/// reader's choice (`println!` would panic instead).
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Prints a JSON value, pretty, on stdout.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("the answer does not encode")?;
    print_text(&format!("{text}\n"))
}

/// An RFC 3339 time as `2026-11-25 10:00:00.123 +00:00`: to the millisecond, which is as
/// fine as a person reads; a time that does not parse is shown as it came.
pub fn readable_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f %:z").to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// `text` cut to at most `max_chars` characters, the cut marked with `…`.
pub fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// 1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st.
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_read_as_spoken() {
        let read: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            read,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("0123456789abc", 10), "012345678…");
        assert_eq!(shorten("ééééé", 3), "éé…");
    }

    #[test]
    fn times_read_to_the_millisecond() {
        assert_eq!(
            readable_time("2026-12-01T06:50:55.864763329+00:00"),
            "2026-12-01 06:50:55.864 +00:00"
        );
        assert_eq!(readable_time("yesterday"), "yesterday");
    }
}
