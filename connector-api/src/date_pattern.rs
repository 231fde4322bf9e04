//! Java date patterns (`SimpleDateFormat`, Joda `DateTimeFormat`) as strftime formats, for the
//! settings Kafka Connect users already write (`timestamp.format` of TimestampRouter, `path.format`
//! of the S3 sink's time-based partitioner). The result only uses specifiers chrono understands.

/// Which Java pattern language a setting uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `java.text.SimpleDateFormat`: `Y` is the week year, which is not supported.
    SimpleDateFormat,
    /// Joda-Time (Confluent's storage partitioners): `Y` is the year of era, the same as `y`.
    Joda,
}

/// Converts a Java date pattern (`yyyy-MM-dd'T'HH`, `'year'=YYYY/'month'=MM`) into a strftime
/// format; quoted text is literal, other non-letters are kept, unknown letters are an error.
pub fn to_strftime(pattern: &str, style: Style) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or("unterminated quote")?;
            let literal: String = chars[i + 1..i + 1 + end].iter().collect();
            out.push_str(&literal.replace('%', "%%"));
            i += end + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let spec = match (c, run) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('Y', 2) if style == Style::Joda => "%y",
            ('Y', _) if style == Style::Joda => "%Y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', _) => "%3f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('Z', _) => "%z",
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!("unsupported pattern letter {c}"));
            }
            (c, n) => {
                for _ in 0..n {
                    out.push_str(if c == '%' { "%%" } else { "" });
                    if c != '%' {
                        out.push(c);
                    }
                }
                i += n;
                continue;
            }
        };
        out.push_str(spec);
        i += run;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joda_and_simple_date_format_patterns() {
        let joda = to_strftime("'year'=YYYY/'month'=MM/'day'=dd/'hour'=HH", Style::Joda).unwrap();
        assert_eq!(joda, "year=%Y/month=%m/day=%d/hour=%H");
        assert_eq!(
            to_strftime("yyyy-MM-dd'T'HH", Style::SimpleDateFormat).unwrap(),
            "%Y-%m-%dT%H"
        );
        assert!(to_strftime("YYYY", Style::SimpleDateFormat).is_err());
        assert!(to_strftime("'year=YYYY", Style::Joda).is_err());
        assert_eq!(to_strftime("'100%'", Style::Joda).unwrap(), "100%%");
    }
}
