//! A small, faithful stand-in for the Kubernetes API server, for the parts
//! Paygress uses, that the real `kube` client talks to over plain HTTP on
//! loopback: [`FakeApiServer`].
//!
//! # What it models
//!
//! - Kinds: core/v1 `pods` and `services`, coordination.k8s.io/v1 `leases`,
//!   at their real paths (`/api/v1/namespaces/{ns}/pods[/{name}]`,
//!   `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`), and
//!   list/watch across namespaces (`/api/v1/pods`); `GET /version`, `/api`
//!   and `/apis` answer minimally (kube's `Api` never asks for them).
//! - Objects are JSON as the client sent them. A create sets `kind`,
//!   `apiVersion`, `metadata.{namespace,uid,resourceVersion,
//!   creationTimestamp}`; a pod gets `status: {phase: Pending}` (the status
//!   it sent is dropped), a Service `spec.type: ClusterIP`, a `clusterIP`
//!   and `sessionAffinity: None`. One resourceVersion counter for all kinds.
//! - Create: 201; a name clash is `409 AlreadyExists`; a missing or
//!   malformed name (RFC 1123 subdomain; RFC 1035 label for Services), a
//!   pod without containers, a Service without ports are `422 Invalid`; a
//!   body that carries a resourceVersion is the real `500` "resourceVersion
//!   should not be set on objects to be created".
//! - Get (404 `NotFound`), list (a `PodList`… with the list's
//!   resourceVersion; items without `kind`/`apiVersion`, as real lists) with
//!   `labelSelector` (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (…)`,
//!   `k notin (…)`) and `fieldSelector` (`=`, `==`, `!=` on
//!   `metadata.name`, `metadata.namespace` and the fields the real server
//!   allows for the kind, e.g. `status.phase`; others are a 400).
//! - Watch (`watch=true|1`): newline-delimited `WatchEvent`s. With
//!   `resourceVersion` unset or `"0"`: the current objects as `ADDED`, then
//!   live events; with a resourceVersion: every kept event after it, then
//!   live ones. As in the real watch cache, an object that comes into a
//!   selector is `ADDED` and one that leaves it is `DELETED`. It ends after
//!   `timeoutSeconds` (default 30 min), with a `BOOKMARK` of the current
//!   resourceVersion first when `allowWatchBookmarks=true`. The whole
//!   history is kept, so a watch never expires on its own;
//!   [`FakeApiServer::compact`] forgets it, after which a watch from an
//!   older resourceVersion gets the real answer: `200` and one `ERROR`
//!   event, `410 Expired` "too old resource version: …".
//!   `sendInitialEvents` (streaming lists) is refused with the real 422 of
//!   a server without the WatchList feature gate.
//! - Patch: `application/merge-patch+json` (RFC 7386) and
//!   `application/strategic-merge-patch+json` (the same merge: lists are
//!   replaced, not merged by key); `application/apply-patch+yaml` (needs
//!   `fieldManager`; creates an absent object, else merges, with no field
//!   ownership). Other patch types: 415. Replace (PUT).
//! - Updates (patch and replace): a `metadata.resourceVersion` in the body
//!   that is not the stored one is `409 Conflict` ("the object has been
//!   modified; …"); a PUT without one is taken for pods and Services and a
//!   `422` for leases (`AllowUnconditionalUpdate`); a PUT of an absent
//!   lease creates it (201), of an absent pod or Service is a 404
//!   (`AllowCreateOnUpdate`). `uid`, `creationTimestamp`, `namespace` keep
//!   their stored values; a different `uid` is a 409; the name must match
//!   the URL (400). The `status` of pods and Services does not change
//!   through the main resource. A pod's `spec` may change only in
//!   container images and by lowering (or first setting)
//!   `activeDeadlineSeconds`; anything else, raising it or removing it is
//!   `422 Invalid` with the real messages. A write that changes nothing
//!   keeps the resourceVersion and emits no event (as etcd); one that does
//!   bumps it and emits `MODIFIED`.
//! - Delete: `200` with the object for pods and Services, with a `Success`
//!   Status for leases (`ReturnDeletedObject`), 404 when absent; honours
//!   `preconditions` (uid, resourceVersion: 409 "Precondition failed: …").
//!   Deletion is immediate (`DELETED` event with a new resourceVersion),
//!   and the garbage collector's work is done at once: every object in the
//!   namespace whose `ownerReferences` name the deleted uid goes too (and
//!   theirs), or, with `propagationPolicy: Orphan`, loses that reference.
//! - Errors are real `Status` objects (`kind`, `status: Failure`, `reason`,
//!   `message`, `details`, `code`).
//! - Faults: [`FakeApiServer::fail_with`], [`FakeApiServer::fail_creates_with`],
//!   [`FakeApiServer::heal`]; [`FakeApiServer::stop`] closes the listener
//!   and every open connection (watches included), and
//!   [`FakeApiServer::start_again`] listens on the same port with the same
//!   objects.
//! - A network partition of one client: a client made by
//!   [`FakeApiServer::client_named`] names itself in every request (a
//!   header), and [`FakeApiServer::partition`] cuts that client alone off:
//!   its requests get no answer and do not reach the objects until
//!   [`FakeApiServer::reconnect`] (or `heal`), when those still held arrive
//!   late, as delayed packets do, and are acted on then (against the objects
//!   as they are by then: a write based on an old resourceVersion is a
//!   409), whether or not the client still waits for the answer.
//!
//! # What a real API server does that this does not
//!
//! Authentication, authorization (RBAC), admission (webhooks, quota
//! accounting, LimitRanges, Pod Security: a quota refusal is only what a
//! test makes with `fail_creates_with`), the defaulting of most fields (a
//! pod's `restartPolicy`, `dnsPolicy`, container `imagePullPolicy`,
//! `terminationMessagePath`…, a Service's `ipFamilies`, port `protocol` and
//! `targetPort`), most validation, `metadata.generation`, `generateName`,
//! managed fields and server-side apply's field ownership and conflicts,
//! strategic merge by list keys, JSON Patch, subresources (`/status`,
//! `/log`, `/exec`, …), finalizers, graceful deletion (no
//! `deletionTimestamp`/terminating state: a pod is gone at once, as an
//! unscheduled one is), cross-namespace and cluster-scoped owners,
//! `deletecollection`, dry run (refused with a 400), namespaces as objects
//! (every namespace exists), list pagination (`limit` is ignored, there is
//! never a `continue`) and list-at-a-resourceVersion semantics (a list is
//! always the latest state), periodic watch bookmarks, streaming lists,
//! protobuf, CBOR, tables, gzip, HTTP/2, TLS, API discovery documents
//! (`/api/v1`, `/openapi/v2`), Events, and every other kind.

mod store;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use self::store::{ApiError, Event, Fault, Filter, Kind, Store, LEASES, PODS, SERVICES};

type Shared = Arc<Mutex<Store>>;

/// The header in which a client made by [`FakeApiServer::client_named`]
/// names itself.
const CLIENT_HEADER: &str = "x-paygress-fake-client";

fn lock(store: &Shared) -> MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The stand-in API server: an HTTP/1.1 server on `127.0.0.1:<port>` with
/// its objects in memory (see the module documentation). Stops when
/// dropped.
#[derive(Debug)]
pub struct FakeApiServer {
    port: u16,
    store: Shared,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl FakeApiServer {
    /// Starts it on a free loopback port, with no objects.
    pub async fn start() -> FakeApiServer {
        let store: Shared = Arc::new(Mutex::new(Store::new()));
        let mut last_error = None;
        for _ in 0..20 {
            let port = crate::free_port();
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => {
                    return FakeApiServer {
                        port,
                        server: Mutex::new(Some(serve(listener, store.clone()))),
                        store,
                    }
                }
                Err(err) => last_error = Some(err),
            }
        }
        panic!("fake API server: cannot bind a loopback port: {last_error:?}")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        crate::loopback_url(self.port)
    }

    /// A kube client configuration for it (`kube::Config::new`, namespace
    /// `default`, kube's default retries of 429/503/504 on).
    pub fn config(&self) -> kube::Config {
        let url = self
            .url()
            .parse()
            .unwrap_or_else(|err| panic!("fake API server: bad URL {}: {err}", self.url()));
        kube::Config::new(url)
    }

    /// A kube client of it, built from [`FakeApiServer::config`].
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config())
            .unwrap_or_else(|err| panic!("fake API server: cannot build a kube client: {err}"))
    }

    /// A kube client of it that names itself `name` in every request (a
    /// header), so that [`FakeApiServer::partition`] can cut it alone off;
    /// its requests are logged with `from <name>`.
    pub fn client_named(&self, name: &str) -> kube::Client {
        let mut config = self.config();
        let value = HeaderValue::from_str(name)
            .unwrap_or_else(|err| panic!("fake API server: bad client name {name:?}: {err}"));
        config
            .headers
            .push((HeaderName::from_static(CLIENT_HEADER), value));
        kube::Client::try_from(config)
            .unwrap_or_else(|err| panic!("fake API server: cannot build a kube client: {err}"))
    }

    /// Cuts the client `name` ([`FakeApiServer::client_named`]) off, as a
    /// network partition between it and the server would: its later
    /// requests get no answer and do not reach the objects (they are not
    /// counted nor logged) until [`FakeApiServer::reconnect`] or
    /// [`FakeApiServer::heal`]. Then those still held arrive, late, and are
    /// acted on against the objects as they are by then, whether or not the
    /// client still waits for the answer (unless the server was stopped in
    /// between: then they are lost). Other clients go on as before.
    pub fn partition(&self, name: &str) {
        lock(&self.store).partitions.send_modify(|cut| {
            cut.insert(name.to_string());
        });
    }

    /// Ends the partition of the client `name`: its held requests arrive.
    pub fn reconnect(&self, name: &str) {
        lock(&self.store).partitions.send_modify(|cut| {
            cut.remove(name);
        });
    }

    /// How many requests of partitioned clients are held now (not yet
    /// arrived).
    pub fn held(&self) -> usize {
        lock(&self.store).held
    }

    /// Writes `dir/kubeconfig` (cluster `http://127.0.0.1:<port>`, no
    /// credentials, one context that is the current one, namespace
    /// `default`) and returns its path, for `KUBECONFIG=<path>`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {}\n\
             users:\n\
             - name: fake\n  user: {{}}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\n\
             current-context: fake\n\
             preferences: {{}}\n",
            self.url()
        );
        crate::process::write_file(&path, &text);
        path
    }

    /// Every later request is answered with this `Status` (e.g. `503
    /// ServiceUnavailable`, `403 Forbidden`) until [`FakeApiServer::heal`].
    /// Watches already open go on.
    pub fn fail_with(&self, status: u16, reason: &str, message: &str) {
        lock(&self.store).fail_all = Some(Fault(ApiError::new(status, reason, message)));
    }

    /// Every later create (POST) is answered with this `Status` (e.g. `403
    /// Forbidden`, `pods "x" is forbidden: exceeded quota: …`) until
    /// [`FakeApiServer::heal`].
    pub fn fail_creates_with(&self, status: u16, reason: &str, message: &str) {
        lock(&self.store).fail_creates = Some(Fault(ApiError::new(status, reason, message)));
    }

    /// Ends both fault switches and every partition.
    pub fn heal(&self) {
        let mut store = lock(&self.store);
        store.fail_all = None;
        store.fail_creates = None;
        store.partitions.send_modify(BTreeSet::clear);
    }

    /// Closes the listener and every open connection (watches end as if
    /// the server went away): a new connection is refused.
    pub async fn stop(&self) {
        lock(&self.store).epoch += 1;
        let server = self
            .server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same port, with the same objects and history.
    pub async fn start_again(&self) {
        self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(err) if tries < 50 => {
                    tries += 1;
                    eprintln!("fake API server: port {} not free yet: {err}", self.port);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!(
                    "fake API server: cannot listen on {} again: {err}",
                    self.port
                ),
            }
        };
        *self
            .server
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Some(serve(listener, self.store.clone()));
    }

    /// Forgets the event history (as etcd compaction does): a watch from a
    /// resourceVersion before now is answered `410 Expired`.
    pub fn compact(&self) {
        lock(&self.store).compact();
    }

    /// How many requests reached it for `kind` (the resource: `pods`,
    /// `services`, `leases`), by HTTP method (`"POST"`, upper case) or by
    /// Kubernetes verb (`"create"`, `"get"`, `"list"`, `"watch"`,
    /// `"patch"`, `"update"`, `"delete"`, lower case). Refused ones count.
    pub fn requests(&self, method: &str, kind: &str) -> usize {
        let store = lock(&self.store);
        store
            .counts
            .get(&(method.to_string(), kind.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Every request so far, as `METHOD /path?query [content-type]`.
    pub fn request_log(&self) -> Vec<String> {
        lock(&self.store).log.clone()
    }

    /// The last resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        lock(&self.store).rv
    }

    pub fn pods(&self, ns: &str) -> Vec<Pod> {
        self.objects(&PODS, ns)
    }

    pub fn pod(&self, ns: &str, name: &str) -> Option<Pod> {
        let obj = lock(&self.store).get(&PODS, ns, name).ok()?;
        Some(decode(obj))
    }

    pub fn services(&self, ns: &str) -> Vec<Service> {
        self.objects(&SERVICES, ns)
    }

    pub fn leases(&self, ns: &str) -> Vec<Lease> {
        self.objects(&LEASES, ns)
    }

    /// Plays the kubelet: sets the pod's `status.phase` (a `MODIFIED`
    /// event). Panics when there is no such pod.
    pub fn set_pod_phase(&self, ns: &str, name: &str, phase: &str) {
        if let Err(err) = lock(&self.store).set_pod_phase(ns, name, phase) {
            panic!("fake API server: set_pod_phase: {}", err.message);
        }
    }

    fn objects<K: DeserializeOwned>(&self, kind: &'static Kind, ns: &str) -> Vec<K> {
        let objects = lock(&self.store).objects(kind, ns);
        objects.into_iter().map(decode).collect()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Ok(mut server) = self.server.lock() {
            if let Some(server) = server.take() {
                server.abort();
            }
        }
    }
}

fn decode<K: DeserializeOwned>(obj: Value) -> K {
    serde_json::from_value(obj.clone()).unwrap_or_else(|err| {
        panic!("fake API server: a stored object does not decode: {err}: {obj}")
    })
}

/// Accepts connections until aborted; aborting drops every connection.
fn serve(listener: TcpListener, store: Shared) -> JoinHandle<()> {
    let app = axum::Router::new().fallback(handle).with_state(store);
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let service = hyper_util::service::TowerToHyperService::new(app.clone());
                    connections.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    })
}

fn json_response(code: u16, body: &Value) -> Response {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(err: &ApiError) -> Response {
    json_response(err.code, &err.status())
}

/// Where a request goes: `(group, version, namespace, resource, name)`.
type Target<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, Option<&'a str>);

fn target(path: &str) -> Option<Target<'_>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, resource] => Some((group, version, Some(*ns), *resource, None)),
        ["namespaces", ns, resource, name] => {
            Some((group, version, Some(*ns), *resource, Some(*name)))
        }
        [resource] => Some((group, version, None, *resource, None)),
        _ => None,
    }
}

/// The minimal discovery answers (`/version`, `/api`, `/apis`).
fn discovery(path: &str, host: &str) -> Option<Value> {
    let v1 = json!({"groupVersion": "coordination.k8s.io/v1", "version": "v1"});
    Some(match path {
        "/version" => json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-paygress-fake",
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        }),
        "/api" => json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }),
        "/apis" => json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{"name": "coordination.k8s.io", "versions": [v1], "preferredVersion": v1}],
        }),
        _ => return None,
    })
}

fn not_found_path() -> Response {
    error_response(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

async fn handle(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let client = headers
        .get(CLIENT_HEADER)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let held = {
        let mut s = lock(&store);
        if !client.is_empty() && s.partitions.borrow().contains(&client) {
            s.held += 1;
            Some((s.partitions.subscribe(), s.epoch))
        } else {
            None
        }
    };
    let Some((mut partitions, epoch)) = held else {
        return answer(store, method, uri, headers, body, client);
    };
    // Held until the partition ends, in a task of its own, so that it
    // arrives then even if the client has given up (and its connection,
    // with this handler, is gone).
    let late = tokio::spawn(async move {
        let _ = partitions.wait_for(|cut| !cut.contains(&client)).await;
        let lost = {
            let mut s = lock(&store);
            s.held -= 1;
            s.epoch != epoch
        };
        if lost {
            return error_response(&ApiError::new(503, "ServiceUnavailable", "lost"));
        }
        answer(store, method, uri, headers, body, client)
    });
    late.await
        .unwrap_or_else(|err| error_response(&ApiError::new(500, "InternalError", err.to_string())))
}

/// The answer to a request that has reached the server.
fn answer(
    store: Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    client: String,
) -> Response {
    let header = |name| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    if let Some(answer) = discovery(uri.path(), &header(header::HOST)) {
        return json_response(200, &answer);
    }
    let query: HashMap<String, String> = Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let content_type = header(header::CONTENT_TYPE);
    let Some((group, version, ns, resource, name)) = target(uri.path()) else {
        return not_found_path();
    };
    let verb = match (&method, name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "",
    };
    {
        let mut s = lock(&store);
        for key in [method.as_str(), verb] {
            *s.counts
                .entry((key.to_string(), resource.to_string()))
                .or_default() += 1;
        }
        let mut line = format!("{method} {uri} [{content_type}]");
        if !client.is_empty() {
            line.push_str(&format!(" from {client}"));
        }
        s.log.push(line);
        if let Some(Fault(err)) = &s.fail_all {
            return error_response(err);
        }
        if let (Some(Fault(err)), &Method::POST) = (&s.fail_creates, &method) {
            return error_response(err);
        }
    }
    let Some(kind) = Kind::find(group, version, resource) else {
        return not_found_path();
    };
    if verb == "watch" {
        return start_watch(&store, kind, ns, &query);
    }
    let request = Request {
        verb,
        kind,
        ns,
        name,
        content_type: &content_type,
        query: &query,
        body: &body,
    };
    match request.act(&mut lock(&store)) {
        Ok((code, obj)) => json_response(code, &obj),
        Err(err) => error_response(&err),
    }
}

/// A request for one of the kinds, other than a watch.
struct Request<'a> {
    verb: &'static str,
    kind: &'static Kind,
    ns: Option<&'a str>,
    name: Option<&'a str>,
    content_type: &'a str,
    query: &'a HashMap<String, String>,
    body: &'a [u8],
}

impl Request<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    fn body(&self) -> Result<Value, ApiError> {
        if self.body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(self.body).map_err(|err| {
            ApiError::bad_request(format!(
                "the body of the request was in an unknown format: {err}"
            ))
        })
    }

    /// The answer's HTTP code and body.
    fn act(&self, s: &mut Store) -> Result<(u16, Value), ApiError> {
        let (kind, created_or_ok) = (self.kind, |created| if created { 201 } else { 200 });
        if self.param("dryRun").is_some() {
            return Err(ApiError::bad_request(
                "the Paygress fake API server does not model dry run",
            ));
        }
        match (self.verb, self.ns, self.name) {
            ("get", Some(ns), Some(name)) => Ok((200, s.get(kind, ns, name)?)),
            ("list", ns, None) => {
                let filter = Filter::new(
                    kind,
                    ns.map(str::to_string),
                    self.param("labelSelector"),
                    self.param("fieldSelector"),
                )?;
                Ok((200, s.list(&filter)))
            }
            ("create", Some(ns), None) => Ok((201, s.create(kind, ns, self.body()?)?)),
            ("update", Some(ns), Some(name)) => {
                let (obj, created) = s.update(kind, ns, name, self.body()?, true)?;
                Ok((created_or_ok(created), obj))
            }
            ("patch", Some(ns), Some(name)) => {
                let apply = match self.content_type.split(';').next().unwrap_or_default().trim() {
                    "application/merge-patch+json" | "application/strategic-merge-patch+json" => false,
                    "application/apply-patch+yaml" => true,
                    other => return Err(ApiError::new(415, "UnsupportedMediaType", format!(
                        "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (the Paygress fake API server does not model {other:?})"
                    ))),
                };
                if apply && self.param("fieldManager").is_none_or(str::is_empty) {
                    return Err(ApiError::new(422, "Invalid",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"));
                }
                let (obj, created) = s.patch(kind, ns, name, &self.body()?, apply)?;
                Ok((created_or_ok(created), obj))
            }
            ("delete", Some(ns), Some(name)) => Ok((200, s.delete(kind, ns, name, &self.body()?)?)),
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )),
        }
    }
}

fn start_watch(
    store: &Shared,
    kind: &'static Kind,
    ns: Option<&str>,
    query: &HashMap<String, String>,
) -> Response {
    let param = |name: &str| query.get(name).map(String::as_str);
    if param("sendInitialEvents").is_some() {
        return error_response(&ApiError::new(422, "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"));
    }
    let filter = match Filter::new(
        kind,
        ns.map(str::to_string),
        param("labelSelector"),
        param("fieldSelector"),
    ) {
        Ok(filter) => filter,
        Err(err) => return error_response(&err),
    };
    let since = match param("resourceVersion").filter(|rv| !rv.is_empty() && *rv != "0") {
        None => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: {rv:?}: strconv.ParseUint: parsing {rv:?}: invalid syntax"
                )))
            }
        },
    };
    let timeout = param("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1800);
    let (start, live) = lock(store).watch(&filter, since);
    let watching = Watching {
        store: store.clone(),
        filter,
        pending: start.iter().map(line).collect(),
        live,
        deadline: tokio::time::Instant::now() + Duration::from_secs(timeout),
        bookmarks: param("allowWatchBookmarks") == Some("true"),
    };
    let stream = futures::stream::unfold(watching, next_line);
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|err| error_response(&ApiError::new(500, "InternalError", err.to_string())))
}

fn line(event: &Value) -> Bytes {
    let mut bytes = event.to_string().into_bytes();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// One open watch.
struct Watching {
    store: Shared,
    filter: Filter,
    pending: VecDeque<Bytes>,
    live: Option<broadcast::Receiver<Arc<Event>>>,
    deadline: tokio::time::Instant,
    bookmarks: bool,
}

async fn next_line(mut w: Watching) -> Option<(Result<Bytes, Infallible>, Watching)> {
    if let Some(line) = w.pending.pop_front() {
        return Some((Ok(line), w));
    }
    loop {
        let received = {
            let live = w.live.as_mut()?;
            tokio::select! {
                _ = tokio::time::sleep_until(w.deadline) => None,
                received = live.recv() => Some(received),
            }
        };
        match received {
            // The time is up: a last bookmark, if asked for.
            None => {
                w.live = None;
                if !w.bookmarks {
                    return None;
                }
                let rv = lock(&w.store).rv.to_string();
                let kind = w.filter.kind;
                let bookmark = json!({"type": "BOOKMARK", "object": {
                    "kind": kind.kind, "apiVersion": kind.api_version(),
                    "metadata": {"resourceVersion": rv},
                }});
                return Some((Ok(line(&bookmark)), w));
            }
            Some(Ok(event)) => {
                if let Some(out) = w.filter.translate(&event) {
                    return Some((Ok(line(&out)), w));
                }
            }
            // Too slow a reader (or the server gone): the watch ends, the
            // client watches again from its last resourceVersion.
            Some(Err(_)) => return None,
        }
    }
}
