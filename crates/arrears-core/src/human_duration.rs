//! Durations in every settings file are written the human way (`15m`, `1h 30m`,
//! `500ms`); one parser so the daemon config, connectors and delivery agree.
//! Use as `#[serde(with = "arrears_core::human_duration")]`.

use serde::{Deserialize, Deserializer};

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[derive(serde::Deserialize)]
    struct S {
        #[serde(with = "super")]
        every: Duration,
    }

    fn parse(s: &str) -> Result<Duration, String> {
        serde_json::from_value::<S>(serde_json::json!({ "every": s }))
            .map(|s| s.every)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_human_durations_and_names_the_bad_ones() {
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert!(parse("soon").is_err());
        assert!(parse("15").is_err(), "a bare number has no unit");
    }
}
