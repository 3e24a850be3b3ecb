//! The proxy-wasm glue: reads what the host has, hands it to
//! [`decision`](crate::decision), applies the verdict and counts it.
//!
//! Only the `hostcalls` that return `Result` are used (the SDK's trait
//! helpers unwrap), and header values are read as bytes (the SDK's `String`
//! readers unwrap UTF-8), so no request can make the VM panic from here.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::decision::{
    CalloutResponse, Decision, HeaderEdits, LocalReply, Pending, Plugin, Verdict, MAX_RELAYED_BODY,
};
use crate::metrics::Counter;

/// The filter's counters, defined in the host once per VM.
#[derive(Debug)]
struct Metrics {
    ids: [Option<u32>; Counter::ALL.len()],
}

impl Metrics {
    fn define() -> Metrics {
        let mut ids = [None; Counter::ALL.len()];
        for (slot, counter) in ids.iter_mut().zip(Counter::ALL) {
            match hostcalls::define_metric(MetricType::Counter, counter.name()) {
                Ok(id) => *slot = Some(id),
                Err(status) => warn!("cannot define {}: {status:?}", counter.name()),
            }
        }
        Metrics { ids }
    }

    fn count(&self, counters: &[Counter]) {
        for counter in counters {
            if let Some(Some(id)) = self.ids.get(counter.slot()) {
                if let Err(status) = hostcalls::increment_metric(*id, 1) {
                    debug!("cannot count {}: {status:?}", counter.name());
                }
            }
        }
    }
}

/// The host's log level, so that disabled levels cost nothing in the VM.
fn sync_log_level() {
    proxy_wasm::set_log_level(hostcalls::get_log_level().unwrap_or(LogLevel::Info));
}

/// The VM's entry point: one root context per plugin configuration.
pub fn start() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(PaygressRoot {
            context_id,
            plugin: None,
            metrics: None,
        })
    });
}

/// The root context: compiles the plugin configuration once.
#[derive(Debug)]
struct PaygressRoot {
    context_id: u32,
    plugin: Option<Rc<Plugin>>,
    metrics: Option<Rc<Metrics>>,
}

impl Context for PaygressRoot {}

impl RootContext for PaygressRoot {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        sync_log_level();
        let bytes = match hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        ) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(status) => {
                error!("cannot read the plugin configuration: {status:?}");
                return false;
            }
        };
        match Plugin::from_json(&bytes) {
            Ok(plugin) => {
                let config = plugin.config();
                info!(
                    "configured (#{}): {} price tiers, unit {}, {} mints, {} pass keys, verifier cluster {:?}, failure_mode {:?}",
                    self.context_id,
                    config.tier_count(),
                    config.unit,
                    config.mints.len(),
                    config.pass_keys().len(),
                    config.verifier.cluster,
                    config.failure_mode,
                );
                if self.metrics.is_none() {
                    self.metrics = Some(Rc::new(Metrics::define()));
                }
                self.plugin = Some(Rc::new(plugin));
                true
            }
            Err(e) => {
                error!("plugin configuration rejected: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PaygressStream {
            context_id,
            plugin: self.plugin.clone(),
            metrics: self.metrics.clone(),
            pending: None,
            response_headers: Vec::new(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One request.
#[derive(Debug)]
struct PaygressStream {
    context_id: u32,
    plugin: Option<Rc<Plugin>>,
    metrics: Option<Rc<Metrics>>,
    /// The callout in flight: its token and what the answer needs.
    pending: Option<(u32, Pending)>,
    /// Headers to add to the upstream's answer (a pass the verifier handed
    /// out).
    response_headers: Vec<(String, String)>,
}

impl PaygressStream {
    fn count(&self, verdict: &Verdict) {
        if let Some(metrics) = &self.metrics {
            metrics.count(verdict.counters);
        }
    }

    /// Applies a request-phase verdict and says how the request goes on.
    fn apply(&mut self, plugin: &Plugin, verdict: Verdict) -> Action {
        self.count(&verdict);
        match verdict.decision {
            Decision::Continue {
                edits,
                response_headers,
            } => match edit_request(&edits) {
                Ok(()) => {
                    self.response_headers = response_headers;
                    Action::Continue
                }
                Err(()) => self.internal_error(),
            },
            Decision::LocalReply(reply) => {
                send(&reply);
                Action::Pause
            }
            Decision::Callout {
                edits,
                call,
                pending,
            } => {
                if edit_request(&edits).is_err() {
                    return self.internal_error();
                }
                let headers: Vec<(&str, &str)> = call
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                match hostcalls::dispatch_http_call(
                    &call.cluster,
                    headers,
                    None,
                    Vec::new(),
                    call.timeout,
                ) {
                    Ok(token) => {
                        debug!("#{}: callout {token} dispatched", self.context_id);
                        self.pending = Some((token, pending));
                        Action::Pause
                    }
                    Err(status) => {
                        warn!(
                            "#{}: cannot call the verifier cluster {:?}: {status:?}",
                            self.context_id, call.cluster
                        );
                        let verdict = plugin.on_callout_failure(&pending);
                        self.apply(plugin, verdict)
                    }
                }
            }
        }
    }

    /// Fails closed when the host would not do what was asked.
    fn internal_error(&self) -> Action {
        error!(
            "#{}: cannot edit the request headers; refusing the request",
            self.context_id
        );
        send(&LocalReply {
            status: 500,
            headers: vec![("content-type".into(), "application/json".into())],
            body: "{\"error\":\"internal error in the payment filter\"}".into(),
        });
        Action::Pause
    }
}

impl Context for PaygressStream {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let pending = match self.pending.take() {
            Some((token, pending)) if token == token_id => pending,
            other => {
                warn!("#{}: unexpected callout answer {token_id}", self.context_id);
                self.pending = other;
                return;
            }
        };
        let Some(plugin) = self.plugin.clone() else {
            self.internal_error();
            return;
        };

        let headers = if num_headers == 0 {
            None
        } else {
            hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).ok()
        };
        let body = if body_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(
                BufferType::HttpCallResponseBody,
                0,
                body_size.min(MAX_RELAYED_BODY + 1),
            )
            .ok()
            .flatten()
            .unwrap_or_default()
        };
        let response = headers.as_deref().map(|headers| CalloutResponse {
            headers,
            body: &body,
            body_size,
        });
        let verdict = plugin.on_callout_response(&pending, response.as_ref(), now_unix());
        self.count(&verdict);
        match verdict.decision {
            Decision::Continue {
                edits,
                response_headers,
            } => {
                if edit_request(&edits).is_err() {
                    self.internal_error();
                    return;
                }
                self.response_headers = response_headers;
                if let Err(status) = hostcalls::resume_http_request() {
                    error!(
                        "#{}: cannot resume the request: {status:?}",
                        self.context_id
                    );
                }
            }
            Decision::LocalReply(reply) => send(&reply),
            Decision::Callout { .. } => {
                // Not produced for an answer; refuse rather than hang.
                self.internal_error();
            }
        }
    }
}

impl HttpContext for PaygressStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(plugin) = self.plugin.clone() else {
            // on_configure failed; Envoy does not run an unconfigured filter,
            // but fail closed if a host did.
            return self.internal_error();
        };
        let headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(headers) => headers,
            Err(status) => {
                error!(
                    "#{}: cannot read the request headers: {status:?}",
                    self.context_id
                );
                return self.internal_error();
            }
        };
        let verdict = plugin.on_request_headers(&headers, now_unix);
        self.apply(&plugin, verdict)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in std::mem::take(&mut self.response_headers) {
            if let Err(status) =
                hostcalls::add_map_value(MapType::HttpResponseHeaders, &name, &value)
            {
                warn!(
                    "#{}: cannot add {name} to the answer: {status:?}",
                    self.context_id
                );
            }
        }
        Action::Continue
    }
}

/// The host's clock in Unix seconds; `u64::MAX` when it cannot be read, so
/// that every pass counts as expired (a 402, never a free pass).
fn now_unix() -> u64 {
    match hostcalls::get_current_time() {
        Ok(time) => match time.duration_since(UNIX_EPOCH) {
            Ok(since) => since.as_secs(),
            Err(e) => {
                error!("the host's clock is before 1970 ({e}); passes count as expired");
                u64::MAX
            }
        },
        Err(status) => {
            error!("cannot read the host's clock: {status:?}; passes count as expired");
            u64::MAX
        }
    }
}

/// Applies header edits to the request.
fn edit_request(edits: &HeaderEdits) -> Result<(), ()> {
    for name in &edits.remove {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name).map_err(|status| {
            error!("cannot remove {name}: {status:?}");
        })?;
    }
    for (name, value) in &edits.add {
        hostcalls::add_map_value_bytes(MapType::HttpRequestHeaders, name, value).map_err(
            |status| {
                error!("cannot add {name}: {status:?}");
            },
        )?;
    }
    Ok(())
}

/// Sends a local reply.
fn send(reply: &LocalReply) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if let Err(status) = hostcalls::send_http_response(
        u32::from(reply.status),
        headers,
        Some(reply.body.as_bytes()),
    ) {
        error!("cannot send the {} answer: {status:?}", reply.status);
    }
}
