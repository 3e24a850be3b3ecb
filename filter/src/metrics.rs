//! The filter's counters: what each decision counts, and the names under which
//! Envoy shows them (`/stats/prometheus` prints proxy-wasm metrics without
//! Envoy's `wasmcustom.` namespace and without the `envoy_` prefix, so the
//! names below are exactly what a scraper sees).

/// A counter of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A request on a free path, let through.
    Free,
    /// A paid path without a token, answered 402 in the proxy.
    Challenged,
    /// A token refused in the proxy (malformed, mint, unit, face value): 400,
    /// no callout.
    Rejected,
    /// A callout to the verifier, counted when decided: a dispatch that the
    /// host refuses (unknown cluster) counts here and in `CalloutFailures`.
    Callouts,
    /// The verifier granted the request (2xx): it went upstream, paid.
    Granted,
    /// The verifier answered 400 or 402 (or 503 `mint_unavailable`), relayed
    /// to the client.
    VerifierRefused,
    /// The verifier could not be used: dispatch error, no answer, timeout or
    /// an unexpected status.
    CalloutFailures,
    /// A callout failure let through unpaid (`failure_mode: allow`).
    AllowedOnFailure,
    /// A genuine pass opened its tier's path: let through, no callout.
    PassAccepted,
    /// An expired pass, answered with the tier's 402 (also `Challenged`).
    PassExpired,
    /// A pass refused: of another tier than the path's (402, also
    /// `Challenged`), or not genuine (400 `pass_invalid`, also `Rejected`).
    PassRefused,
}

impl Counter {
    /// Every counter, in a fixed order ([`Counter::slot`] indexes it).
    /// New counters go at the end, so that the slots already in use keep
    /// their place.
    pub const ALL: [Counter; 11] = [
        Counter::Free,
        Counter::Challenged,
        Counter::Rejected,
        Counter::Callouts,
        Counter::Granted,
        Counter::VerifierRefused,
        Counter::CalloutFailures,
        Counter::AllowedOnFailure,
        Counter::PassAccepted,
        Counter::PassExpired,
        Counter::PassRefused,
    ];

    /// The metric's name, as Envoy's `/stats/prometheus` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Free => "paygress_free_total",
            Counter::Challenged => "paygress_challenged_total",
            Counter::Rejected => "paygress_rejected_total",
            Counter::Callouts => "paygress_callouts_total",
            Counter::Granted => "paygress_granted_total",
            Counter::VerifierRefused => "paygress_verifier_refused_total",
            Counter::CalloutFailures => "paygress_callout_failures_total",
            Counter::AllowedOnFailure => "paygress_allowed_on_failure_total",
            Counter::PassAccepted => "paygress_pass_accepted_total",
            Counter::PassExpired => "paygress_pass_expired_total",
            Counter::PassRefused => "paygress_pass_refused_total",
        }
    }

    /// The position of this counter in [`Counter::ALL`].
    pub const fn slot(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_table_and_names_are_prefixed() {
        for (i, c) in Counter::ALL.into_iter().enumerate() {
            assert_eq!(c.slot(), i);
            assert!(c.name().starts_with("paygress_"));
            assert!(c.name().ends_with("_total"));
            assert!(c
                .name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
