//! Rows printed as Spark's console sink prints them (`df.writeStream.format("console")`): a
//! `Batch: N` header, then a `show()` table of at most 20 rows, cells left-aligned (the console
//! sink's `truncate=false`, as in the seed's output).

use std::fmt::Write as _;

/// Spark's `show()` limit.
const MAX_ROWS: usize = 20;
/// Spark's narrowest column.
const MIN_WIDTH: usize = 3;

/// The console sink's text for one batch: header, table, and how many rows were left out.
pub fn spark_table(batch: u64, headers: &[&str], rows: &[Vec<String>]) -> String {
    let shown = &rows[..rows.len().min(MAX_ROWS)];
    let widths: Vec<usize> = headers
        .iter()
        .enumerate()
        .map(|(c, h)| {
            shown
                .iter()
                .map(|r| r.get(c).map_or(0, |v| v.chars().count()))
                .chain([h.chars().count(), MIN_WIDTH])
                .max()
                .unwrap_or(MIN_WIDTH)
        })
        .collect();
    let rule: String = widths.iter().fold(String::from("+"), |mut s, w| {
        s.push_str(&"-".repeat(*w));
        s.push('+');
        s
    });
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::from("|");
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(s, "{cell:<w$}|");
        }
        s
    };
    let mut out = format!("-------------------------------------------\nBatch: {batch}\n-------------------------------------------\n{rule}\n");
    let _ = writeln!(out, "{}", line(&mut headers.iter().copied()));
    let _ = writeln!(out, "{rule}");
    for r in shown {
        let _ = writeln!(out, "{}", line(&mut r.iter().map(String::as_str)));
    }
    let _ = writeln!(out, "{rule}");
    if rows.len() > MAX_ROWS {
        let _ = writeln!(out, "only showing top {MAX_ROWS} rows");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_looks_like_sparks_show_and_stops_at_twenty_rows() {
        let rows = vec![
            vec![
                "2025-11-06 07:00:00".to_string(),
                "3".into(),
                "45.282".into(),
            ],
            vec![
                "2025-11-06 07:00:10".to_string(),
                "1".into(),
                "58.019".into(),
            ],
        ];
        let text = spark_table(4, &["window_start", "id", "avg_value"], &rows);
        assert_eq!(
            text,
            "-------------------------------------------\nBatch: 4\n-------------------------------------------\n\
             +-------------------+---+---------+\n\
             |window_start       |id |avg_value|\n\
             +-------------------+---+---------+\n\
             |2025-11-06 07:00:00|3  |45.282   |\n\
             |2025-11-06 07:00:10|1  |58.019   |\n\
             +-------------------+---+---------+\n"
        );
        let many: Vec<Vec<String>> = (0..25).map(|i| vec![i.to_string()]).collect();
        let text = spark_table(0, &["n"], &many);
        assert!(text.ends_with("only showing top 20 rows\n"), "{text}");
        assert_eq!(text.lines().filter(|l| l.starts_with('|')).count(), 21);
    }
}
