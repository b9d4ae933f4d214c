//! What a command that did not succeed reports: one line, no secrets.

use std::fmt;

/// An error for the user: printed as `error: {message}`, exit status 1.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
        }
    }

    /// The message as one line, with every form of the store URL's password masked.
    pub(crate) fn to_line(&self, store_url: &str) -> String {
        let mut line: String = self
            .message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        for secret in secrets(store_url) {
            line = line.replace(&secret, "***");
        }
        line
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<stent::Error> for Failure {
    /// The error's sentence, then each cause in its chain that the line does not say yet.
    fn from(e: stent::Error) -> Self {
        let mut line = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let text = c.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = c.source();
        }
        Failure::new(line)
    }
}

/// The passwords a store URL carries (in its user info or a `password=` option), raw and
/// percent-decoded.
fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some((_, rest)) = url.split_once("://") {
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            found.push(password.to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some(("password", password)) = pair.split_once('=') {
                found.push(password.to_owned());
            }
        }
    }
    let decoded: Vec<String> = found.iter().map(|s| percent_decode(s)).collect();
    found.extend(decoded);
    found.retain(|s| !s.is_empty());
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    found
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&stent_core::store::percent_decode(s)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_every_form() {
        let url = "postgres://u:p%40ss@host/db?password=other";
        let f = Failure::new("p%40ss p@ss other\nsecond line");
        assert_eq!(f.to_line(url), "*** *** *** second line");
        assert_eq!(Failure::new("fine").to_line("sqlite://x.db"), "fine");
    }
}
