//! Rate-limited log lines: a flood of connections or subscribers must not fill the disk.
//!
//! Each kind of line has a budget of lines per second; lines past it are counted, not
//! written, and the next line written says how many were left out.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// A budget of log lines per second.
#[derive(Debug)]
pub struct LogBudget {
    /// Lines allowed in each one-second window.
    per_second: u32,
    /// Start of the current window, lines written in it, lines left out since the last
    /// line written.
    window: Mutex<(Instant, u32, u64)>,
}

impl LogBudget {
    /// A budget of `per_second` lines.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Mutex::new((Instant::now(), 0, 0)),
        }
    }

    /// `Some(left_out)` when a line may be written now, with the number of lines left out
    /// since the last one written; `None` when this line must be left out.
    pub fn admit(&self) -> Option<u64> {
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let (start, written, left_out) = &mut *window;
        let now = Instant::now();
        if now.duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *written = 0;
        }
        if *written >= self.per_second {
            *left_out += 1;
            return None;
        }
        *written += 1;
        Some(std::mem::take(left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_budget_are_counted_and_reported_with_the_next_line() {
        let budget = LogBudget::new(2);
        assert_eq!(budget.admit(), Some(0));
        assert_eq!(budget.admit(), Some(0));
        assert_eq!(budget.admit(), None);
        assert_eq!(budget.admit(), None);
        // A new window: the next line written reports the two left out.
        budget.window.lock().unwrap().0 -= Duration::from_secs(2);
        assert_eq!(budget.admit(), Some(2));
        assert_eq!(budget.admit(), Some(0));
    }
}
