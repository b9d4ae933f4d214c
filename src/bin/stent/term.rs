//! The terminal: confirmation prompts, progress on stderr, output on stdout.

use std::future::Future;
use std::io::{self, BufRead as _, IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use crate::failure::Failure;
use crate::output;

/// Asks `{action}? [y/N]` on a terminal; refuses without one. `--yes` skips both.
pub(crate) fn confirm(action: &str, yes: bool) -> Result<(), Failure> {
    if yes {
        return Ok(());
    }
    if !io::stdin().is_terminal() {
        return Err(Failure::new(format!(
            "refusing to {action} without confirmation: stdin is not a terminal (pass --yes)"
        )));
    }
    let mut question = action.to_owned();
    if let Some(first) = question.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    eprint!("{question}? [y/N] ");
    io::stderr().flush().ok();
    let mut answer = String::new();
    io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::new(format!("cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::new("not confirmed; nothing was changed")),
    }
}

/// One line of progress on stderr, redrawn in place; silent when stderr is not a terminal.
pub(crate) struct Progress {
    enabled: bool,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            enabled: io::stderr().is_terminal(),
            started: Instant::now(),
            drawn: None,
        }
    }

    /// Shows `message` with the time elapsed, at most ten times a second, once the work
    /// has taken long enough to be worth a line.
    pub(crate) fn update(&mut self, message: &str) {
        if !self.enabled
            || self.started.elapsed() < Duration::from_millis(300)
            || self
                .drawn
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        let elapsed = output::duration(self.started.elapsed());
        eprint!("\r\x1b[2K{message} ({elapsed})");
        io::stderr().flush().ok();
        self.drawn = Some(Instant::now());
    }

    /// Runs `work`, showing `message` and the time elapsed until it is done.
    pub(crate) async fn around<T>(&mut self, message: &str, work: impl Future<Output = T>) -> T {
        if !self.enabled {
            return work.await;
        }
        let mut work = std::pin::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = tick.tick() => self.update(message),
            }
        }
    }

    /// Erases the progress line.
    pub(crate) fn finish(&mut self) {
        if self.enabled && self.drawn.take().is_some() {
            eprint!("\r\x1b[2K");
            io::stderr().flush().ok();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Writes a command's output; a reader that went away (`stent cache ls | head`) is not an error.
pub(crate) fn print(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(Failure::new(format!("cannot write the output: {e}")))
        }
        _ => Ok(()),
    }
}
