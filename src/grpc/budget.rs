//! Bytes held on behalf of clients, bounded per connection and per core.
//!
//! HTTP/2 windows bound what a client may send or leave unread; what the
//! proxy must still hold beyond them — partial request messages it pulled
//! to assemble, replies waiting for a client's window — is charged here, so
//! a client that sends half messages or never reads gets errors instead of
//! growing the process. Single-threaded: one core's connections only.

use std::{cell::Cell, rc::Rc};

pub struct Budget {
    used: Cell<usize>,
    limit: usize,
    parent: Option<Rc<Budget>>,
}

impl Budget {
    pub fn new(limit: usize, parent: Option<Rc<Budget>>) -> Rc<Budget> {
        Rc::new(Budget { used: Cell::new(0), limit, parent })
    }

    /// No limit (user functions, tests, our own clients).
    pub fn unlimited() -> Rc<Budget> {
        Budget::new(usize::MAX, None)
    }

    pub fn used(&self) -> usize {
        self.used.get()
    }

    fn fits(&self, n: usize) -> bool {
        self.used.get().saturating_add(n) <= self.limit && self.parent.as_ref().is_none_or(|p| p.fits(n))
    }

    fn add(&self, n: usize) {
        self.used.set(self.used.get() + n);
        if let Some(p) = &self.parent {
            p.add(n);
        }
    }

    fn sub(&self, n: usize) {
        self.used.set(self.used.get() - n);
        if let Some(p) = &self.parent {
            p.sub(n);
        }
    }
}

/// Bytes charged to a budget (and its parents) until dropped or reduced.
pub struct Charge {
    budget: Rc<Budget>,
    bytes: usize,
}

impl Charge {
    pub fn new(budget: &Rc<Budget>) -> Charge {
        Charge { budget: budget.clone(), bytes: 0 }
    }

    /// Adds `n` bytes, or `false` (nothing charged) if a limit would be passed.
    pub fn grow(&mut self, n: usize) -> bool {
        if !self.budget.fits(n) {
            return false;
        }
        self.budget.add(n);
        self.bytes += n;
        true
    }

    /// Gives back `n` of the charged bytes.
    pub fn shrink(&mut self, n: usize) {
        let n = n.min(self.bytes);
        self.budget.sub(n);
        self.bytes -= n;
    }

    /// Sets the charge to exactly `n` bytes, or `false` if growing would pass
    /// a limit (the charge is unchanged then).
    pub fn set(&mut self, n: usize) -> bool {
        match n.cmp(&self.bytes) {
            std::cmp::Ordering::Greater => self.grow(n - self.bytes),
            _ => {
                self.shrink(self.bytes - n);
                true
            }
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_count_against_every_level_and_return_on_drop() {
        let core = Budget::new(100, None);
        let (a, b) = (Budget::new(60, Some(core.clone())), Budget::new(60, Some(core.clone())));
        let mut ca = Charge::new(&a);
        assert!(ca.grow(50));
        assert!(!ca.grow(20), "connection limit");
        let mut cb = Charge::new(&b);
        assert!(!cb.grow(60), "core limit: 50 + 60 > 100");
        assert!(cb.grow(40));
        assert_eq!((a.used(), b.used(), core.used()), (50, 40, 90));
        ca.shrink(30);
        assert!(cb.set(20) && cb.set(60), "shrink then grow within limits");
        drop((ca, cb));
        assert_eq!((a.used(), b.used(), core.used()), (0, 0, 0));
    }
}
