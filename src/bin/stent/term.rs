//! The terminal: errors as one line, confirmation prompts, progress on stderr, output on stdout.

use std::io::{self, IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
use serde_json::Value;

/// An error for the user: printed as `error: {message}`, exit status 1.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl Failure {
    /// The message as one line, with every form of the store URL's password masked.
    pub(crate) fn to_line(&self, store_url: &str) -> String {
        let line = self.0.replace(char::is_control, " ");
        stent::store::url_secrets(store_url)
            .iter()
            .fold(line, |line, secret| line.replace(secret.as_str(), "***"))
    }
}

impl From<stent::Error> for Failure {
    /// The error's sentence, then each cause in its chain that the line does not say yet.
    fn from(e: stent::Error) -> Self {
        let mut line = e.to_string();
        let causes = std::iter::successors(std::error::Error::source(&e), |c| c.source());
        for text in causes.map(|c| c.to_string()) {
            if !line.contains(&text) {
                line = format!("{line}: {text}");
            }
        }
        Failure(line)
    }
}

/// Asks `{action}? [y/N]` on a terminal; refuses without one. `--yes` skips both.
pub(crate) fn confirm(action: &str, yes: bool) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    if !io::stdin().is_terminal() {
        return Err(Failure(format!(
            "refusing to {action} without confirmation: stdin is not a terminal (pass --yes)"
        )));
    }
    eprint!("{}{}? [y/N] ", action[..1].to_uppercase(), &action[1..]);
    let mut answer = String::new();
    io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Failure(format!("cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure("not confirmed; nothing was changed".into())),
    }
}

/// A spinner with a message and the time elapsed on stderr, drawn only when stderr is a
/// terminal, and erased when dropped.
pub(crate) fn spinner(message: String) -> ProgressBar {
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a template");
    let bar = ProgressBar::new_spinner()
        .with_style(style)
        .with_message(message)
        .with_finish(ProgressFinish::AndClear);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Writes a command's JSON document or its text; a reader that went away
/// (`stent cache ls | head`) is not an error.
pub(crate) fn print((doc, text): (Value, String), json: bool) -> Result<(), Failure> {
    let text = if json { format!("{doc:#}\n") } else { text };
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure(format!("cannot write the output: {e}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_every_form() {
        let url = "postgres://u:p%40ss@host/db?password=other";
        let f = Failure("p%40ss p@ss other\nsecond line".into());
        assert_eq!(f.to_line(url), "*** *** *** second line");
        assert_eq!(Failure("fine".into()).to_line("sqlite://x.db"), "fine");
    }
}
