//! The stand-in's objects, their history and the verbs, without HTTP: what
//! the registry and etcd of a real API server do for the three kinds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, watch};

/// One kind the stand-in serves, with the flags its real registry has.
#[derive(Debug)]
pub(crate) struct Kind {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub kind: &'static str,
    /// `AllowCreateOnUpdate`: a PUT of an absent object creates it.
    pub create_on_update: bool,
    /// `AllowUnconditionalUpdate`: a PUT without `resourceVersion` is taken.
    pub unconditional_update: bool,
    /// `ReturnDeletedObject`: a DELETE answers with the object (else a Status).
    pub return_deleted: bool,
    /// Has a `status` that writes to the main resource leave alone.
    pub has_status: bool,
    /// The field selectors the real server accepts beyond `metadata.name`
    /// and `metadata.namespace`.
    pub fields: &'static [&'static str],
}

pub(crate) static PODS: Kind = Kind {
    group: "",
    version: "v1",
    resource: "pods",
    kind: "Pod",
    create_on_update: false,
    unconditional_update: true,
    return_deleted: true,
    has_status: true,
    fields: &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ],
};
pub(crate) static SERVICES: Kind = Kind {
    group: "",
    version: "v1",
    resource: "services",
    kind: "Service",
    create_on_update: false,
    unconditional_update: true,
    return_deleted: true,
    has_status: true,
    fields: &["spec.clusterIP", "spec.type"],
};
pub(crate) static LEASES: Kind = Kind {
    group: "coordination.k8s.io",
    version: "v1",
    resource: "leases",
    kind: "Lease",
    create_on_update: true,
    unconditional_update: false,
    return_deleted: false,
    has_status: false,
    fields: &[],
};

impl Kind {
    pub fn find(group: &str, version: &str, resource: &str) -> Option<&'static Kind> {
        [&PODS, &SERVICES, &LEASES]
            .into_iter()
            .find(|k| k.group == group && k.version == version && k.resource == resource)
    }

    /// The kind with this resource name (they are all distinct here).
    fn of(resource: &str) -> Option<&'static Kind> {
        [&PODS, &SERVICES, &LEASES]
            .into_iter()
            .find(|k| k.resource == resource)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, `leases.coordination.k8s.io`: how messages name the resource.
    fn qualified(&self, name: &str) -> String {
        if self.group.is_empty() {
            name.to_string()
        } else {
            format!("{name}.{}", self.group)
        }
    }

    fn details(&self, name: &str, kind: &str) -> Map<String, Value> {
        let mut details = Map::new();
        details.insert("name".into(), name.into());
        if !self.group.is_empty() {
            details.insert("group".into(), self.group.into());
        }
        details.insert("kind".into(), kind.into());
        details
    }
}

/// A failure, answered as a `Status` object with its HTTP code.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Map<String, Value>>,
}

/// One field error of an `Invalid` answer: (field, cause reason, message).
type Cause = (&'static str, &'static str, String);

const OPTIMISTIC_LOCK: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn not_found(kind: &Kind, name: &str) -> Self {
        ApiError {
            details: Some(kind.details(name, kind.resource)),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", kind.qualified(kind.resource)),
            )
        }
    }

    fn already_exists(kind: &Kind, name: &str) -> Self {
        ApiError {
            details: Some(kind.details(name, kind.resource)),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!(
                    "{} \"{name}\" already exists",
                    kind.qualified(kind.resource)
                ),
            )
        }
    }

    fn conflict(kind: &Kind, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(kind.details(name, kind.resource)),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    kind.qualified(kind.resource)
                ),
            )
        }
    }

    /// `Invalid` (422), its message and causes spelled as the real one's;
    /// `kind_name` is the Kind (`Pod`), or the resource where the real
    /// server uses it.
    pub fn invalid(kind: &Kind, kind_name: &str, name: &str, causes: Vec<Cause>) -> Self {
        let spelled: Vec<String> = causes.iter().map(|(f, _, m)| format!("{f}: {m}")).collect();
        let list = match spelled.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let mut details = kind.details(name, kind_name);
        details.insert(
            "causes".into(),
            causes
                .iter()
                .map(|(field, reason, message)| {
                    json!({"reason": reason, "message": message, "field": field})
                })
                .collect(),
        );
        ApiError {
            details: Some(details),
            ..ApiError::new(
                422,
                "Invalid",
                format!(
                    "{} \"{name}\" is invalid: {list}",
                    kind.qualified(kind_name)
                ),
            )
        }
    }

    /// The `Status` object the real server writes.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = Value::Object(details.clone());
        }
        status
    }
}

/// One change, as kept in the history and sent to the watches.
#[derive(Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: &'static Kind,
    pub namespace: String,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub type_: &'static str,
    /// The object after the change (for `DELETED`: the last state, with the
    /// deletion's resourceVersion).
    pub object: Value,
    /// The object before the change.
    pub prev: Option<Value>,
}

/// What a list or a watch selects.
#[derive(Debug)]
pub(crate) struct Filter {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    labels: Vec<(String, Op, Vec<String>)>,
    fields: Vec<(String, bool, String)>,
}

#[derive(Debug, PartialEq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Filter {
    /// Parses `labelSelector` and `fieldSelector` as the real server does
    /// (label: `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin
    /// (a,b)`; field: `=`, `==`, `!=` on the fields the kind supports).
    pub fn new(
        kind: &'static Kind,
        namespace: Option<String>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Filter, ApiError> {
        let mut filter = Filter {
            kind,
            namespace,
            labels: Vec::new(),
            fields: Vec::new(),
        };
        for req in split_top(labels.unwrap_or("")) {
            filter.labels.push(parse_label(req)?);
        }
        for req in split_top(fields.unwrap_or("")) {
            let (field, negated, value) = if let Some((f, v)) = req.split_once("!=") {
                (f, true, v)
            } else if let Some((f, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
                (f, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: '{req}'"
                )));
            };
            let field = field.trim();
            if !["metadata.name", "metadata.namespace"].contains(&field)
                && !kind.fields.contains(&field)
            {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            filter
                .fields
                .push((field.to_string(), negated, value.trim().to_string()));
        }
        Ok(filter)
    }

    pub fn matches(&self, namespace: &str, obj: &Value) -> bool {
        if self.namespace.as_deref().is_some_and(|ns| ns != namespace) {
            return false;
        }
        let labels = &obj["metadata"]["labels"];
        let labels_ok = self.labels.iter().all(|(key, op, values)| {
            let value = labels[key.as_str()].as_str();
            match op {
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::In => value.is_some_and(|v| values.iter().any(|w| w == v)),
                Op::NotIn => !value.is_some_and(|v| values.iter().any(|w| w == v)),
            }
        });
        labels_ok
            && self.fields.iter().all(|(field, negated, wanted)| {
                let value = field
                    .split('.')
                    .fold(obj, |v, part| &v[part])
                    .as_str()
                    .unwrap_or("");
                (value == wanted) != *negated
            })
    }

    /// The watch event this change is for a watcher with this filter, as
    /// the real watch cache makes it: an object that comes into the
    /// selection is `ADDED`, one that leaves it is `DELETED` (its previous
    /// state, with the new resourceVersion).
    pub fn translate(&self, event: &Event) -> Option<Value> {
        if !std::ptr::eq(event.kind, self.kind) {
            return None;
        }
        let now = self.matches(&event.namespace, &event.object);
        let before = event
            .prev
            .as_ref()
            .is_some_and(|prev| self.matches(&event.namespace, prev));
        let (type_, object) = match (event.type_, before, now) {
            ("DELETED", _, true) => ("DELETED", event.object.clone()),
            ("DELETED", _, false) => return None,
            (_, true, true) => ("MODIFIED", event.object.clone()),
            (_, false, true) => ("ADDED", event.object.clone()),
            (_, true, false) => {
                let mut gone = event.prev.clone().unwrap_or_default();
                gone["metadata"]["resourceVersion"] = event.rv.to_string().into();
                ("DELETED", gone)
            }
            (_, false, false) => return None,
        };
        Some(json!({"type": type_, "object": object}))
    }
}

/// The requirements of a selector, split at the commas outside parentheses.
fn split_top(selector: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn parse_label(req: &str) -> Result<(String, Op, Vec<String>), ApiError> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: {req:?}"));
    let key_ok = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    let (key, op, values) = if let Some(key) = req.strip_prefix('!') {
        (key.trim(), Op::DoesNotExist, Vec::new())
    } else if let Some((key, values)) = req.split_once('(') {
        let (key, op) = key
            .trim()
            .rsplit_once(char::is_whitespace)
            .ok_or_else(bad)?;
        let op = match op {
            "in" => Op::In,
            "notin" => Op::NotIn,
            _ => return Err(bad()),
        };
        let values = values.strip_suffix(')').ok_or_else(bad)?;
        let values = values.split(',').map(|v| v.trim().to_string()).collect();
        (key.trim(), op, values)
    } else if let Some((key, value)) = req.split_once("!=") {
        (key.trim(), Op::NotIn, vec![value.trim().to_string()])
    } else if let Some((key, value)) = req.split_once("==").or_else(|| req.split_once('=')) {
        (key.trim(), Op::In, vec![value.trim().to_string()])
    } else {
        (req, Op::Exists, Vec::new())
    };
    if key_ok(key) {
        Ok((key.to_string(), op, values))
    } else {
        Err(bad())
    }
}

/// A fault switch: every matching request is answered with this.
#[derive(Debug, Clone)]
pub(crate) struct Fault(pub ApiError);

type Key = (&'static str, String, String);

/// Everything the stand-in holds, behind one `Mutex`.
#[derive(Debug)]
pub(crate) struct Store {
    objects: BTreeMap<Key, Value>,
    /// The last resourceVersion handed out (one counter for every kind).
    pub rv: u64,
    history: Vec<Arc<Event>>,
    /// Events at or before this resourceVersion are gone from the history.
    compacted: u64,
    live: broadcast::Sender<Arc<Event>>,
    pub fail_all: Option<Fault>,
    pub fail_creates: Option<Fault>,
    /// Requests by (HTTP method or Kubernetes verb, resource).
    pub counts: HashMap<(String, String), usize>,
    pub log: Vec<String>,
    services_made: u32,
    /// The clients cut off ([`super::FakeApiServer::partition`]), by name.
    pub partitions: watch::Sender<BTreeSet<String>>,
    /// Requests of partitioned clients held now.
    pub held: usize,
    /// Bumped by every stop: a request held across one is lost.
    pub epoch: u64,
}

fn meta<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj["metadata"][field].as_str().filter(|s| !s.is_empty())
}

fn set_rv(obj: &mut Value, rv: u64) {
    obj["metadata"]["resourceVersion"] = rv.to_string().into();
}

fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        8 | (b[8] & 3),
        &hex[17..20],
        &hex[20..32]
    )
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in fields {
            if value.is_null() {
                target.remove(key);
            } else {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// `metadata.name` against the kind's rule (RFC 1123 subdomain; RFC 1035
/// label for Services).
fn name_error(kind: &Kind, name: &str) -> Option<String> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ends_ok = |s: &str| s.starts_with(alnum) && s.ends_with(alnum);
    if std::ptr::eq(kind, &SERVICES) {
        let ok = name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && ends_ok(name)
            && name.chars().all(|c| alnum(c) || c == '-');
        (!ok).then(|| format!("Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"))
    } else {
        let ok = name.len() <= 253
            && name
                .split('.')
                .all(|l| ends_ok(l) && l.chars().all(|c| alnum(c) || c == '-'));
        (!ok).then(|| format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"))
    }
}

/// The validation a create goes through (a small part of the real one).
fn validate_create(kind: &Kind, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut causes: Vec<Cause> = Vec::new();
    if name.is_empty() {
        causes.push((
            "metadata.name",
            "FieldValueRequired",
            "Required value: name or generateName is required".into(),
        ));
    } else if let Some(err) = name_error(kind, name) {
        causes.push(("metadata.name", "FieldValueInvalid", err));
    }
    let empty = |v: &Value| v.as_array().is_none_or(Vec::is_empty);
    if std::ptr::eq(kind, &PODS) && empty(&obj["spec"]["containers"]) {
        causes.push((
            "spec.containers",
            "FieldValueRequired",
            "Required value".into(),
        ));
    }
    if std::ptr::eq(kind, &SERVICES)
        && obj["spec"]["type"].as_str() != Some("ExternalName")
        && obj["spec"]["clusterIP"].as_str() != Some("None")
        && empty(&obj["spec"]["ports"])
    {
        causes.push(("spec.ports", "FieldValueRequired", "Required value".into()));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(kind, kind.kind, name, causes))
    }
}

/// A pod's spec may change only in its images and by lowering
/// `activeDeadlineSeconds` (`ValidatePodUpdate`).
fn validate_pod_update(name: &str, old: &Value, new: &Value) -> Result<(), ApiError> {
    let field = "spec.activeDeadlineSeconds";
    let invalid = |msg: String| {
        ApiError::invalid(&PODS, "Pod", name, vec![(field, "FieldValueInvalid", msg)])
    };
    match (
        old["activeDeadlineSeconds"].as_i64(),
        &new["activeDeadlineSeconds"],
    ) {
        (Some(_), Value::Null) => {
            return Err(invalid(
                "Invalid value: \"null\": must not update from a positive integer to nil value"
                    .into(),
            ))
        }
        (_, value) if !value.is_null() && value.as_i64().is_none_or(|n| n < 1) => {
            return Err(invalid(format!(
                "Invalid value: {value}: must be between 1 and 2147483647, inclusive"
            )))
        }
        (Some(before), value) if value.as_i64().is_some_and(|n| n > before) => {
            return Err(invalid(format!(
                "Invalid value: {value}: must be less than or equal to previous value"
            )))
        }
        _ => {}
    }
    let mutable_stripped = |spec: &Value| {
        let mut spec = spec.clone();
        if let Some(fields) = spec.as_object_mut() {
            fields.remove("activeDeadlineSeconds");
        }
        for list in ["containers", "initContainers"] {
            if let Some(containers) = spec[list].as_array_mut() {
                for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
        spec
    };
    if mutable_stripped(old) == mutable_stripped(new) {
        return Ok(());
    }
    Err(ApiError::invalid(&PODS, "Pod", name, vec![(
        "spec",
        "FieldValueForbidden",
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
    )]))
}

impl Store {
    pub fn new() -> Store {
        Store {
            objects: BTreeMap::new(),
            rv: 0,
            history: Vec::new(),
            compacted: 0,
            live: broadcast::channel(1024).0,
            fail_all: None,
            fail_creates: None,
            counts: HashMap::new(),
            log: Vec::new(),
            services_made: 0,
            partitions: watch::Sender::new(BTreeSet::new()),
            held: 0,
            epoch: 0,
        }
    }

    fn emit(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        type_: &'static str,
        object: Value,
        prev: Option<Value>,
    ) {
        let event = Arc::new(Event {
            rv: self.rv,
            kind,
            namespace: namespace.to_string(),
            type_,
            object,
            prev,
        });
        self.history.push(event.clone());
        // Nobody watching is fine.
        let _ = self.live.send(event);
    }

    /// Stores `new` over `old` as one write: a new resourceVersion and a
    /// `MODIFIED` event, unless nothing changed (then, as with etcd, no
    /// write, no new resourceVersion, no event).
    fn write(&mut self, kind: &'static Kind, key: Key, old: Value, mut new: Value) -> Value {
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == old {
            return old;
        }
        self.rv += 1;
        set_rv(&mut new, self.rv);
        self.objects.insert(key.clone(), new.clone());
        self.emit(kind, &key.1, "MODIFIED", new.clone(), Some(old));
        new
    }

    pub fn get(&self, kind: &'static Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&(kind.resource, ns.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// The current objects a filter selects, by namespace and name.
    pub fn select(&self, filter: &Filter) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, ns, _), obj)| *r == filter.kind.resource && filter.matches(ns, obj))
            .map(|(_, obj)| obj.clone())
            .collect()
    }

    /// A `PodList` (…) of the objects a filter selects; items without
    /// `kind`/`apiVersion`, as the real server sends them.
    pub fn list(&self, filter: &Filter) -> Value {
        let items: Vec<Value> = self
            .select(filter)
            .into_iter()
            .map(|mut obj| {
                if let Some(fields) = obj.as_object_mut() {
                    fields.remove("kind");
                    fields.remove("apiVersion");
                }
                obj
            })
            .collect();
        json!({
            "kind": format!("{}List", filter.kind.kind),
            "apiVersion": filter.kind.api_version(),
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": items,
        })
    }

    pub fn create(
        &mut self,
        kind: &'static Kind,
        ns: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        if meta(&obj, "namespace").is_some_and(|n| n != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let name = meta(&obj, "name").unwrap_or_default().to_string();
        validate_create(kind, &name, &obj)?;
        if meta(&obj, "resourceVersion").is_some() {
            return Err(ApiError::new(
                500,
                "InternalError",
                "Internal error occurred: resourceVersion should not be set on objects to be created",
            ));
        }
        let key = (kind.resource, ns.to_string(), name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(kind, &name));
        }
        obj["kind"] = kind.kind.into();
        obj["apiVersion"] = kind.api_version().into();
        let now = serde_json::to_value(Time(Timestamp::now())).unwrap_or_default();
        let metadata = &mut obj["metadata"];
        metadata["namespace"] = ns.into();
        metadata["uid"] = uuid().into();
        metadata["creationTimestamp"] = now;
        if let Some(fields) = metadata.as_object_mut() {
            for gone in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                fields.remove(gone);
            }
        }
        if std::ptr::eq(kind, &PODS) {
            obj["status"] = json!({"phase": "Pending"});
        }
        if std::ptr::eq(kind, &SERVICES) {
            let spec = &mut obj["spec"];
            if spec["type"].is_null() {
                spec["type"] = "ClusterIP".into();
            }
            if spec["clusterIP"].as_str().is_none_or(str::is_empty) {
                self.services_made += 1;
                let n = self.services_made;
                let ip = format!("10.96.{}.{}", n / 250, n % 250 + 2);
                spec["clusterIP"] = ip.clone().into();
                spec["clusterIPs"] = json!([ip]);
            }
            if spec["sessionAffinity"].is_null() {
                spec["sessionAffinity"] = "None".into();
            }
            obj["status"] = json!({"loadBalancer": {}});
        }
        self.rv += 1;
        set_rv(&mut obj, self.rv);
        self.objects.insert(key, obj.clone());
        self.emit(kind, ns, "ADDED", obj.clone(), None);
        Ok(obj)
    }

    /// PUT (`put`) or the result of a PATCH: checks and stores `new` over
    /// the stored object; `true` when it made it.
    pub fn update(
        &mut self,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        mut new: Value,
        put: bool,
    ) -> Result<(Value, bool), ApiError> {
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        let body_name = meta(&new, "name").unwrap_or_default();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if meta(&new, "namespace").is_some_and(|n| n != ns) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let key = (kind.resource, ns.to_string(), name.to_string());
        let Some(old) = self.objects.get(&key).cloned() else {
            if put && kind.create_on_update {
                return self.create(kind, ns, new).map(|obj| (obj, true));
            }
            return Err(ApiError::not_found(kind, name));
        };
        let old_rv = meta(&old, "resourceVersion").unwrap_or_default();
        match meta(&new, "resourceVersion") {
            None if put && !kind.unconditional_update => {
                return Err(ApiError::invalid(
                    kind,
                    kind.resource,
                    name,
                    vec![(
                        "metadata.resourceVersion",
                        "FieldValueInvalid",
                        "Invalid value: 0x0: must be specified for an update".into(),
                    )],
                ))
            }
            Some(rv) if rv != old_rv => {
                return Err(ApiError::conflict(kind, name, OPTIMISTIC_LOCK))
            }
            _ => {}
        }
        if let Some(uid) = meta(&new, "uid").filter(|u| Some(*u) != meta(&old, "uid")) {
            let why = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                meta(&old, "uid").unwrap_or_default()
            );
            return Err(ApiError::conflict(kind, name, &why));
        }
        for field in [
            "uid",
            "creationTimestamp",
            "namespace",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old["metadata"].get(field) {
                Some(value) => new["metadata"][field] = value.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        new["kind"] = kind.kind.into();
        new["apiVersion"] = kind.api_version().into();
        if kind.has_status {
            new["status"] = old["status"].clone();
        }
        if std::ptr::eq(kind, &PODS) {
            validate_pod_update(name, &old["spec"], &new["spec"])?;
        }
        Ok((self.write(kind, key, old, new), false))
    }

    /// PATCH with a merge (`merge`) or apply (`!merge`) body.
    pub fn patch(
        &mut self,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        patch: &Value,
        apply: bool,
    ) -> Result<(Value, bool), ApiError> {
        if !patch.is_object() {
            return Err(ApiError::bad_request("the patch is not a JSON object"));
        }
        match self.get(kind, ns, name) {
            Ok(mut obj) => {
                merge(&mut obj, patch);
                self.update(kind, ns, name, obj, false)
            }
            Err(_) if apply => {
                let mut obj = patch.clone();
                obj["metadata"]["name"] = name.into();
                self.create(kind, ns, obj).map(|obj| (obj, true))
            }
            Err(err) => Err(err),
        }
    }

    fn remove(&mut self, key: &Key) -> Option<Value> {
        let kind = Kind::of(key.0)?;
        let old = self.objects.remove(key)?;
        self.rv += 1;
        let mut gone = old.clone();
        set_rv(&mut gone, self.rv);
        self.emit(kind, &key.1, "DELETED", gone, Some(old.clone()));
        Some(old)
    }

    /// DELETE with its `DeleteOptions` (preconditions, propagation policy).
    pub fn delete(
        &mut self,
        kind: &'static Kind,
        ns: &str,
        name: &str,
        options: &Value,
    ) -> Result<Value, ApiError> {
        let old = self.get(kind, ns, name)?;
        let uid = meta(&old, "uid").unwrap_or_default().to_string();
        let preconditions = &options["preconditions"];
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            let wanted = preconditions[field].as_str().filter(|s| !s.is_empty());
            let actual = meta(&old, field).unwrap_or_default();
            if let Some(wanted) = wanted.filter(|w| *w != actual) {
                let why = format!(
                    "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
                );
                return Err(ApiError::conflict(kind, name, &why));
            }
        }
        self.remove(&(kind.resource, ns.to_string(), name.to_string()));
        let orphan =
            options["propagationPolicy"] == "Orphan" || options["orphanDependents"] == true;
        if orphan {
            self.orphan_dependents(ns, &uid);
        } else {
            self.collect_garbage(ns, &uid);
        }
        if kind.return_deleted {
            return Ok(old);
        }
        let mut details = kind.details(name, kind.resource);
        details.insert("uid".into(), uid.into());
        Ok(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }))
    }

    fn dependents(&self, ns: &str, owner_uid: &str) -> Vec<Key> {
        self.objects
            .iter()
            .filter(|((_, n, _), obj)| {
                n == ns
                    && obj["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// What the garbage collector does after a background or foreground
    /// delete, at once: every dependent goes, and theirs.
    fn collect_garbage(&mut self, ns: &str, uid: &str) {
        let mut owners = vec![uid.to_string()];
        while let Some(owner) = owners.pop() {
            for key in self.dependents(ns, &owner) {
                if let Some(gone) = self.remove(&key) {
                    owners.extend(meta(&gone, "uid").map(str::to_string));
                }
            }
        }
    }

    /// What the garbage collector does after an orphaning delete: the
    /// dependents lose their reference to the owner.
    fn orphan_dependents(&mut self, ns: &str, uid: &str) {
        for key in self.dependents(ns, uid) {
            let (Some(kind), Some(old)) = (Kind::of(key.0), self.objects.get(&key).cloned()) else {
                continue;
            };
            let mut new = old.clone();
            if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != uid);
                if refs.is_empty() {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove("ownerReferences");
                    }
                }
            }
            self.write(kind, key, old, new);
        }
    }

    /// The kubelet's status write: `status.phase`.
    pub fn set_pod_phase(&mut self, ns: &str, name: &str, phase: &str) -> Result<(), ApiError> {
        let old = self.get(&PODS, ns, name)?;
        let mut new = old.clone();
        new["status"]["phase"] = phase.into();
        self.write(&PODS, (PODS.resource, ns.into(), name.into()), old, new);
        Ok(())
    }

    /// Forgets the history up to now: a watch from an older
    /// resourceVersion gets `410 Expired`.
    pub fn compact(&mut self) {
        self.compacted = self.rv;
        self.history.clear();
    }

    /// Where a watch from `since` starts: the events it gets at once (the
    /// current objects as `ADDED` when `since` is `None`, i.e. unset or
    /// `"0"`; else the kept events after `since`, or a `410 Expired` error
    /// event), and the live events after them.
    pub fn watch(
        &self,
        filter: &Filter,
        since: Option<u64>,
    ) -> (Vec<Value>, Option<broadcast::Receiver<Arc<Event>>>) {
        let start = match since {
            None => self
                .select(filter)
                .into_iter()
                .map(|obj| json!({"type": "ADDED", "object": obj}))
                .collect(),
            Some(rv) if rv < self.compacted => {
                let expired = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {rv} ({})", self.compacted),
                );
                return (
                    vec![json!({"type": "ERROR", "object": expired.status()})],
                    None,
                );
            }
            Some(rv) => self
                .history
                .iter()
                .filter(|event| event.rv > rv)
                .filter_map(|event| filter.translate(event))
                .collect(),
        };
        (start, Some(self.live.subscribe()))
    }

    /// The stored objects of a kind in a namespace.
    pub fn objects(&self, kind: &'static Kind, ns: &str) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((r, n, _), _)| *r == kind.resource && n == ns)
            .map(|(_, obj)| obj.clone())
            .collect()
    }
}
