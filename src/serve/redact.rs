//! Scrubbing known secret values from text that leaves the machine (statuses, check runs, PR
//! comments). Plans never print environment values, but a pull request is untrusted and its
//! manifests are interpolated from berth's own environment: `labels: {x: ${BERTH_GITHUB_TOKEN}}`
//! would put the token in a label, and labels are shown in plan diffs. Every value of a
//! secret-looking variable, and berth's own credentials, are replaced before posting.

use std::collections::BTreeMap;

use crate::model::Secret;

/// Name fragments that mark a variable as secret (matched case-insensitively).
const SECRET_NAMES: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
];
/// Shorter values are too likely to occur by chance (and too weak to be worth hiding).
const MIN_LEN: usize = 4;

/// The secret values to scrub, longest first (so a secret containing another is hidden whole).
#[derive(Clone, Default)]
pub struct Redactor {
    values: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} values)", self.values.len())
    }
}

impl Redactor {
    /// From the process environment and berth's own secrets.
    pub fn new(env: &BTreeMap<String, String>, secrets: &[&Secret]) -> Redactor {
        let mut values: Vec<String> = env
            .iter()
            .filter(|(name, _)| {
                let upper = name.to_ascii_uppercase();
                SECRET_NAMES.iter().any(|s| upper.contains(s))
            })
            .map(|(_, v)| v.clone())
            .chain(secrets.iter().map(|s| s.expose().to_string()))
            // A PEM key is scrubbed line by line too, in case only part of it leaks.
            .flat_map(|v| {
                let lines: Vec<String> = v.lines().map(str::to_string).collect();
                std::iter::once(v).chain(lines)
            })
            .map(|v| v.trim().to_string())
            .filter(|v| v.chars().count() >= MIN_LEN)
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    /// Every environment value of at least 6 characters, whatever its name: for pull-request
    /// previews, whose manifests are untrusted and could interpolate any of berth's variables
    /// into a field that plans show (`labels: {x: ${DATABASE_URL}}`).
    pub fn every_value(env: &BTreeMap<String, String>) -> Redactor {
        let mut values: Vec<String> = env
            .values()
            .map(|v| v.trim().to_string())
            .filter(|v| v.chars().count() >= 6)
            .collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    /// `text` with every secret value replaced by `(hidden)`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "(hidden)");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_hide_every_environment_value() {
        let env = BTreeMap::from([
            (
                "DATABASE_URL".to_string(),
                "postgres://u:pw@db/app".to_string(),
            ),
            ("SHORT".to_string(), "main".to_string()),
        ]);
        let r = Redactor::every_value(&env);
        assert_eq!(
            r.scrub("labels x added (postgres://u:pw@db/app) on main"),
            "labels x added ((hidden)) on main"
        );
    }

    #[test]
    fn secret_named_values_and_credentials_are_scrubbed() {
        let env = BTreeMap::from([
            (
                "BERTH_GITHUB_TOKEN".to_string(),
                "ghp_abcdef123456".to_string(),
            ),
            ("DB_PASSWORD".to_string(), "hunter2!".to_string()),
            ("DOMAIN".to_string(), "example.org".to_string()),
            ("api_key".to_string(), "k3y".to_string()),
        ]);
        let webhook = Secret::new("whsec-0001");
        let r = Redactor::new(&env, &[&webhook]);
        let text =
            "labels x added (ghp_abcdef123456), pw hunter2!, site example.org, whsec-0001, k3y";
        assert_eq!(
            r.scrub(text),
            "labels x added ((hidden)), pw (hidden), site example.org, (hidden), k3y"
        );
    }
}
