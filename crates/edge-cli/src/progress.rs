//! Progress on stderr while `edge install` works: spinners per container on a terminal,
//! one line per change otherwise (CI logs, tests), nothing on stdout.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edge_channels::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Reports steps and deploy events.
pub(crate) struct Progress {
    tty: bool,
    multi: MultiProgress,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    bars: BTreeMap<String, ProgressBar>,
    /// Last state printed per container (non-terminal output), and when.
    printed: BTreeMap<String, (String, Instant)>,
}

/// How often an unchanged waiting state is repeated on non-terminal output.
const REPEAT: Duration = Duration::from_secs(5);

impl Progress {
    /// Progress on stderr; spinners only if stderr is a terminal.
    pub(crate) fn new() -> Self {
        let tty = std::io::stderr().is_terminal();
        let target = if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Self { tty, multi: MultiProgress::with_draw_target(target), state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A line, above any spinner.
    pub(crate) fn line(&self, text: &str) {
        if self.tty {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    /// The start of a step of the pipeline.
    pub(crate) fn step(&self, text: &str) {
        self.line(&format!("==> {text}"));
    }

    /// Something an operation of edge-deploy reports.
    pub(crate) fn report(&self, progress: edge_deploy::Progress) {
        match progress {
            edge_deploy::Progress::Step(text) => self.step(&text),
            edge_deploy::Progress::Note(text) => self.line(&text),
            edge_deploy::Progress::Deploy(event) => self.event(event),
            edge_deploy::Progress::Waiting { label, state, waited } => self.waiting(&label, &state, waited),
            edge_deploy::Progress::Done { label, state, ok } => self.done(&label, &state, ok),
        }
    }

    /// A deploy event.
    pub(crate) fn event(&self, event: Event) {
        match event {
            Event::Removing { name } => self.line(&format!("    removing {name}")),
            Event::Creating { name } => self.line(&format!("    creating {name}")),
            Event::Starting { name } => self.line(&format!("    starting {name}")),
            Event::Waiting { name, state, waited } => self.waiting(&name, &state, waited),
            Event::Ready { name } => self.done(&name, "ready", true),
            Event::Failed { name, reason } => self.done(&name, &format!("FAILED: {reason}"), false),
        }
    }

    /// Waiting on something that is not a container (e.g. the front proxy's pool).
    pub(crate) fn waiting(&self, name: &str, state: &str, waited: Duration) {
        let mut s = self.lock();
        if self.tty {
            let bar = s.bars.entry(name.to_owned()).or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("    {spinner} {prefix} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(name.to_owned());
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            });
            bar.set_message(state.to_owned());
            return;
        }
        let repeat = match s.printed.get(name) {
            Some((last, at)) => last != state || at.elapsed() >= REPEAT,
            None => true,
        };
        if repeat {
            eprintln!("    waiting for {name}: {state} ({}s)", waited.as_secs());
            s.printed.insert(name.to_owned(), (state.to_owned(), Instant::now()));
        }
    }

    /// The end of a wait.
    pub(crate) fn done(&self, name: &str, text: &str, ok: bool) {
        let mut s = self.lock();
        s.printed.remove(name);
        let mark = if ok { "ok" } else { "!!" };
        match s.bars.remove(name) {
            Some(bar) => {
                bar.finish_and_clear();
                drop(s);
                self.line(&format!("    {mark} {name}: {text}"));
            }
            None => {
                drop(s);
                self.line(&format!("    {mark} {name}: {text}"));
            }
        }
    }
}
