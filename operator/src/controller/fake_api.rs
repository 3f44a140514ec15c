//! A fake Kubernetes API server for the reconciler's unit tests: a `kube::Client` whose requests
//! are answered from memory (Secrets, one PostgresCluster, Events) and recorded for assertions.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

/// One request the reconciler sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// The JSON body (Null when there was none).
    pub body: Value,
}

/// The API server's state: Secrets by name, the cluster object, and every request seen.
#[derive(Default)]
pub struct FakeApi {
    /// Secrets of the test namespace, by name.
    pub secrets: Mutex<BTreeMap<String, Value>>,
    /// The PostgresCluster as stored (returned by patches of it).
    pub cluster: Mutex<Value>,
    /// Other PostgresClusters of the namespace (listed with it).
    pub others: Mutex<Vec<Value>>,
    requests: Mutex<Vec<Recorded>>,
}

impl FakeApi {
    /// A fake holding `cluster`, and a client for it with default namespace `ns`.
    pub fn start(cluster: Value, ns: &str) -> (Arc<FakeApi>, kube::Client) {
        let api = Arc::new(FakeApi {
            cluster: Mutex::new(cluster),
            ..Default::default()
        });
        let a = api.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let a = a.clone();
            async move { Ok::<_, std::convert::Infallible>(a.answer(req).await) }
        });
        (api, kube::Client::new(svc, ns))
    }

    /// Stores a Secret whose `data` holds `pairs` (base64-encoded as the API server does).
    pub fn add_secret(&self, name: &str, pairs: &[(&str, &str)]) {
        let data: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(base64(v.as_bytes()))))
            .collect();
        let s = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "resourceVersion": "1"}, "data": data});
        self.secrets.lock().unwrap().insert(name.into(), s);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests whose path ends with `suffix` and whose method is `method`.
    pub fn sent(&self, method: Method, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }

    /// The bodies of the Events posted (events.k8s.io/v1), in order.
    pub fn events(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == Method::POST && r.path.ends_with("/events"))
            .map(|r| r.body)
            .collect()
    }

    /// Forgets the requests seen so far.
    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }

    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let path = parts.uri.path().to_string();
        self.requests.lock().unwrap().push(Recorded {
            method: parts.method.clone(),
            path: path.clone(),
            body: body.clone(),
        });
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (&parts.method, segs.as_slice()) {
            (&Method::GET, [.., "secrets", name]) => {
                match self.secrets.lock().unwrap().get(*name) {
                    Some(s) => reply(StatusCode::OK, s.clone()),
                    None => not_found(name),
                }
            }
            (&Method::POST, [.., "secrets"]) => {
                let name = body["metadata"]["name"].as_str().unwrap_or_default();
                self.secrets
                    .lock()
                    .unwrap()
                    .insert(name.into(), body.clone());
                reply(StatusCode::CREATED, body)
            }
            (&Method::POST, [.., "events"]) | (&Method::PATCH, [.., "events", _]) => {
                reply(StatusCode::CREATED, body)
            }
            (&Method::GET, [.., "postgresclusters"]) => {
                let mut items = vec![self.cluster.lock().unwrap().clone()];
                items.extend(self.others.lock().unwrap().iter().cloned());
                let list = json!({"apiVersion": "pgmetal.io/v1alpha1",
                    "kind": "PostgresClusterList", "metadata": {}, "items": items});
                reply(StatusCode::OK, list)
            }
            (&Method::PATCH, [.., "postgresclusters", _, "status"]) => {
                let mut c = self.cluster.lock().unwrap();
                c["status"] = body["status"].clone();
                reply(StatusCode::OK, c.clone())
            }
            (&Method::PATCH, [.., "postgresclusters", _]) => {
                let mut c = self.cluster.lock().unwrap();
                finalizer_patch(&mut c, &body);
                reply(StatusCode::OK, c.clone())
            }
            (&Method::PATCH, [.., "configmaps", _]) => reply(StatusCode::OK, body),
            (&Method::PATCH, [.., "secrets", name]) => {
                let mut secrets = self.secrets.lock().unwrap();
                match secrets.get_mut(*name) {
                    Some(s) => {
                        if let Some(data) = body["data"].as_object() {
                            for (k, v) in data {
                                s["data"][k] = v.clone();
                            }
                        }
                        if body["metadata"]["ownerReferences"].is_null() {
                            s["metadata"]
                                .as_object_mut()
                                .map(|m| m.remove("ownerReferences"));
                        }
                        reply(StatusCode::OK, s.clone())
                    }
                    None => not_found(name),
                }
            }
            _ => not_found(&path),
        }
    }
}

/// Applies the JSON patch kube's finalizer helper sends (add or remove the finalizer list entry).
fn finalizer_patch(obj: &mut Value, patch: &Value) {
    for op in patch.as_array().into_iter().flatten() {
        match (op["op"].as_str(), op["path"].as_str()) {
            (Some("add"), Some("/metadata/finalizers")) => {
                obj["metadata"]["finalizers"] = op["value"].clone()
            }
            (Some("add"), Some("/metadata/finalizers/-")) => {
                if let Some(l) = obj["metadata"]["finalizers"].as_array_mut() {
                    l.push(op["value"].clone());
                }
            }
            (Some("remove"), Some(p)) if p.starts_with("/metadata/finalizers/") => {
                let i: usize = p
                    .rsplit('/')
                    .next()
                    .and_then(|i| i.parse().ok())
                    .unwrap_or(0);
                if let Some(l) = obj["metadata"]["finalizers"].as_array_mut() {
                    l.remove(i);
                }
            }
            _ => {}
        }
    }
}

fn reply(code: StatusCode, body: Value) -> Response<Body> {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .expect("a valid response")
}

fn not_found(what: &str) -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("{what} not found"), "reason": "NotFound", "code": 404});
    reply(StatusCode::NOT_FOUND, status)
}

/// Standard base64 with padding (the encoding of a Secret's `data`).
fn base64(bytes: &[u8]) -> String {
    let v = serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).unwrap_or_default();
    v.as_str().unwrap_or_default().to_string()
}
