//! Revocation on the request path: every verified token, fresh or from the cache, is checked against the
//! revocations of the configuration and those the gateway's workers share.

use super::{Admitted, Engine, Failure};
use crate::revocation::{Refusal, RevocationSet, TokenFacts};
use std::rc::Rc;

impl Engine {
    /// Replaces the shared revocations (the filter read a new state, or a list went stale or fresh again).
    pub fn set_revocations(&self, set: Rc<RevocationSet>) {
        if let Ok(mut current) = self.revocations.try_borrow_mut() {
            *current = set;
        }
    }

    /// The shared revocations in force.
    pub fn revocations(&self) -> Rc<RevocationSet> {
        self.revocations.try_borrow().map(|r| r.clone()).unwrap_or_default()
    }

    /// Refuses a verified token that a revocation names (those of the configuration and the shared ones),
    /// on every request, cached tokens included. A token found clean is not looked up again until the
    /// shared set changes.
    pub(super) fn check_revocation(&self, admitted: &Rc<Admitted>, now: i64) -> Result<(), Failure> {
        let Ok(shared) = self.revocations.try_borrow() else { return Err(Failure::RevocationStale) };
        let inline = &self.settings.revocations;
        if shared.is_empty() && inline.is_empty() {
            return Ok(());
        }
        let generation = shared.generation();
        if admitted.clean.get() == generation {
            return Ok(());
        }
        let facts = admitted.facts.get_or_init(|| TokenFacts::of(&admitted.token));
        match inline.check(facts, now).or_else(|| shared.check(facts, now)) {
            None => {
                admitted.clean.set(generation);
                Ok(())
            }
            Some(Refusal::Revoked(kind)) => Err(Failure::Revoked { kind, admitted: admitted.clone() }),
            Some(Refusal::Stale) => Err(Failure::RevocationStale),
        }
    }
}
