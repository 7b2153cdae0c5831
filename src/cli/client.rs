use std::io::Read;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::{ClientArgs, ClientCommand, PlanCommand};

/// Exit codes: 0 answered, 1 the service rejected the call (problem on stderr), 2 bad usage,
/// 3 the service could not be reached.
pub const EXIT_REJECTED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;

#[derive(Debug)]
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    query: Vec<(String, String)>,
}

/// The text with `#` comments (to the end of a line, outside strings) taken out, so a body
/// annotated as the guide's troubleshooting example is (`"require_healthy": false # Relax …`)
/// is read as written.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped, mut in_comment) = (false, false, false);
    for c in text.chars() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
                out.push(c);
            }
            continue;
        }
        match c {
            '#' if !in_string => in_comment = true,
            '"' if !escaped => in_string = !in_string,
            _ => {}
        }
        escaped = in_string && c == '\\' && !escaped;
        if !in_comment {
            out.push(c);
        }
    }
    out
}

fn read_data(args: &ClientArgs) -> Result<Option<Value>, String> {
    let text = match (&args.data, &args.file) {
        (Some(d), _) => d.clone(),
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            s
        }
        (None, Some(f)) => {
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?
        }
        (None, None) => return Ok(None),
    };
    serde_json::from_str(&without_comments(&text))
        .map(Some)
        .map_err(|e| format!("--data/--file is not valid JSON: {e}"))
}

/// The strategy name from --name or the data (taken out of the data for GET commands).
fn name_of(args: &ClientArgs, data: &mut Option<Value>, remove: bool) -> Option<String> {
    if let Some(n) = &args.name {
        return Some(n.clone());
    }
    let obj = data.as_mut()?.as_object_mut()?;
    for key in ["strategy_name", "provider_name", "name"] {
        if let Some(Value::String(n)) = obj.get(key).cloned() {
            if remove {
                obj.remove(key);
            }
            return Some(n);
        }
    }
    None
}

/// Takes a string field out of the data: it goes in the path, not the body.
fn take_string(data: &mut Option<Value>, key: &str) -> Option<String> {
    data.as_mut()
        .and_then(Value::as_object_mut)
        .and_then(|o| o.remove(key))
        .and_then(|v| v.as_str().map(str::to_string))
}

fn query_of(data: Option<Value>) -> Result<Vec<(String, String)>, String> {
    match data {
        None => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect()),
        Some(_) => Err("for this command --data must be a JSON object of query parameters".into()),
    }
}

fn plan(cmd: &ClientCommand) -> Result<(ClientArgs, Call), String> {
    use ClientCommand::*;
    let (args, method, route): (&ClientArgs, Method, &str) = match cmd {
        ExecuteProviderOperation(a) => (a, Method::POST, "/api/v1/providers/operations"),
        SelectProviderStrategy(a) => (a, Method::POST, "/api/v1/providers/selection"),
        RegisterProviderStrategy(a) => (a, Method::POST, "/api/v1/providers"),
        UnregisterProviderStrategy(a) => (a, Method::DELETE, "/api/v1/providers/{name}"),
        UpdateProviderStrategy(a) => (a, Method::PUT, "/api/v1/providers/{name}"),
        ConfigureProviderStrategy(a) => (a, Method::PUT, "/api/v1/providers/configuration"),
        GetProviderStrategyConfig(a) => (a, Method::GET, "/api/v1/providers/configuration"),
        UpdateProviderHealth(a) => (a, Method::POST, "/api/v1/providers/{name}/health"),
        GetServiceHealth(a) => (a, Method::GET, "/health"),
        GetProviderHealth(a) => (a, Method::GET, "/api/v1/providers/{name?}/health"),
        CheckProviderHealth(a) => (a, Method::POST, "/api/v1/providers/{name}/health/check"),
        ListAvailableProviders(a) => (a, Method::GET, "/api/v1/providers"),
        GetProviderMetrics(a) => (a, Method::GET, "/api/v1/providers/{name?}/metrics"),
        GetProviderCapabilities(a) => (a, Method::GET, "/api/v1/providers/{name}/capabilities"),
        GetParkedPools(a) => (a, Method::GET, "/api/v1/providers/{name}/parked-pools"),
        SetStrategyWeight(a) => (a, Method::PUT, "/api/v1/providers/{name}/weights/{member}"),
        SetProviderCircuit(a) => (a, Method::PUT, "/api/v1/providers/{name}/circuit"),
        GetAvailableTemplates(a) => (a, Method::GET, "/api/v1/templates"),
        RequestMachines(a) => (a, Method::POST, "/api/v1/requests"),
        GetRequestStatus(a) => (a, Method::GET, "/api/v1/requests/{request_id}"),
        RequestReturnMachines(a) => (a, Method::POST, "/api/v1/returns"),
        GetReturnRequests(a) => (a, Method::GET, "/api/v1/returns"),
        ListProviderEvents(a) => (a, Method::GET, "/api/v1/events"),
        ListAudit(a) => (a, Method::GET, "/api/v1/audit"),
        Plan(PlanCommand::RequestMachines(p)) => (&p.client, Method::POST, "/api/v1/requests/plan"),
        ListAlerts(a) => (a, Method::GET, "/api/v1/alerts"),
        GetAlertRules(a) => (a, Method::GET, "/api/v1/alerts/rules"),
        ConfigureAlertRules(a) => (a, Method::PUT, "/api/v1/alerts/rules"),
    };
    let mut data = read_data(args)?;
    if let Plan(PlanCommand::RequestMachines(p)) = cmd {
        data = Some(serde_json::json!({"template_id": p.template, "machine_count": p.count}));
    }
    if let (ListAudit(_), Some(id)) = (cmd, &args.request_id) {
        let query = data.get_or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(q) = query {
            q.insert("request_id".into(), Value::String(id.clone()));
        }
    }
    // Commands without a body: the data names the strategy, the rest are query parameters.
    let is_get =
        method == Method::GET || method == Method::DELETE || matches!(cmd, CheckProviderHealth(_));
    let path = if route.contains("{request_id}") {
        let id = args
            .request_id
            .clone()
            .or_else(|| take_string(&mut data, "request_id"))
            .ok_or("this command needs the request: --request-id req-…")?;
        route.replace("{request_id}", &urlencode(&id))
    } else if route.contains("{name?}") {
        match name_of(args, &mut data, true) {
            Some(n) => route.replace("{name?}", &urlencode(&n)),
            None => route.replace("/{name?}", ""),
        }
    } else if route.contains("{name}") {
        // A body names the strategy itself (updateProviderStrategy keeps strategy_name in it).
        let n = name_of(args, &mut data, is_get)
            .ok_or("this command needs the strategy: --name NAME (or strategy_name in --data)")?;
        let route = route.replace("{name}", &urlencode(&n));
        if route.contains("{member}") {
            let member = take_string(&mut data, "member")
                .ok_or("this command needs the member: \"member\" in --data")?;
            route.replace("{member}", &urlencode(&member))
        } else {
            route
        }
    } else {
        route.to_string()
    };
    let call = if is_get {
        Call {
            method,
            path,
            body: None,
            query: query_of(data)?,
        }
    } else {
        let body = match (data, &method) {
            (Some(d), _) => Some(d),
            (None, m) if *m == Method::POST || *m == Method::PUT => {
                return Err("this command needs a JSON body: --data '{…}' or --file FILE".into());
            }
            (None, _) => None,
        };
        Call {
            method,
            path,
            body,
            query: Vec::new(),
        }
    };
    Ok((args.clone(), call))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Runs one client command; returns the process exit code.
pub async fn run_client(cmd: ClientCommand) -> i32 {
    let (args, call) = match plan(&cmd) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ohfp: {e}");
            return EXIT_USAGE;
        }
    };
    let client = http_client();
    let sent = send_to_first_reachable(&args.url, |base| {
        let req = request(
            &client,
            call.method.clone(),
            base,
            &call.path,
            args.token.as_deref(),
        )
        .query(&call.query);
        match &call.body {
            Some(body) => req.json(body),
            None => req,
        }
    })
    .await;
    let res = match sent {
        Ok((r, _)) => r,
        Err(why) => {
            eprintln!("ohfp: {why}");
            return EXIT_UNREACHABLE;
        }
    };
    let status = res.status();
    let shown = shown_body(res).await;
    if status.is_success() {
        super::print_line(&shown);
        0
    } else {
        eprintln!("{shown}");
        EXIT_REJECTED
    }
}

/// Bounds the connection to each of the service's URLs, so that a replica on a host that is
/// down (no answer at all) does not hold up the next for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The client the commands call the service with.
pub(super) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .expect("the HTTP client builds")
}

/// Sends the call `build` makes for one service URL to each URL of `urls` (`--url`/`OHFP_URL`:
/// one, or several replicas' separated by commas and/or spaces) in turn, as the HostFactory
/// scripts do: only a failure to reach one ([`not_reached`]) moves on to the next; an answer,
/// whatever its status, is final. The answer and the URL that gave it, or what to say, naming
/// every URL tried.
pub(super) async fn send_to_first_reachable(
    urls: &str,
    build: impl Fn(&str) -> reqwest::RequestBuilder,
) -> Result<(reqwest::Response, &str), String> {
    let mut tried = Vec::new();
    for base in urls.split([',', ' ']).filter(|u| !u.is_empty()) {
        match build(base).send().await {
            Ok(res) => return Ok((res, base)),
            Err(e) if not_reached(&e) => tried.push(format!("{base}: {}", causes(&e))),
            Err(e) => return Err(unreachable(base, &e)),
        }
    }
    if tried.is_empty() {
        return Err(format!("no service URL in --url/OHFP_URL ({urls:?})"));
    }
    Err(format!("cannot reach the service at {}", tried.join("; ")))
}

/// Whether the call never got to the service, so that another replica may take it: not
/// resolved or not connected, the connection closed before the call was sent (hyper's
/// "canceled"), or closed or reset before any answer (the replica died). A timeout once
/// connected is not: the call may be under way.
fn not_reached(e: &reqwest::Error) -> bool {
    if e.is_connect() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_incomplete_message() || e.is_canceled())
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

/// The error and what caused it, on one line (reqwest's own text names only the URL).
fn causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// A call to `path` of the service at `base`, bearing the token when one is given.
pub(super) fn request(
    client: &reqwest::Client,
    method: Method,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let req = client.request(method, url);
    match token.filter(|t| !t.is_empty()) {
        Some(token) => req.bearer_auth(token),
        None => req,
    }
}

/// What to say when the service at `base` could not be reached.
pub(super) fn unreachable(base: &str, e: &reqwest::Error) -> String {
    format!("cannot reach the service at {base}: {}", causes(e))
}

/// An answer's body as shown to a person: JSON pretty-printed, anything else as it came.
pub(super) async fn shown_body(res: reqwest::Response) -> String {
    let text = res.text().await.unwrap_or_default();
    serde_json::from_str::<Value>(&text)
        .map(|v| pretty(&v))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use clap::Parser;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::cli::{Cli, Command};

    fn planned(argv: &[&str]) -> Result<Call, String> {
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Client(c) => plan(&c).map(|(_, call)| call),
            _ => Err("not a client command".into()),
        }
    }

    #[test]
    fn commands_map_to_routes() {
        let c = planned(&["ohfp", "getParkedPools", "--name", "aws-a"]).unwrap();
        assert_eq!(
            (c.method, c.path.as_str()),
            (Method::GET, "/api/v1/providers/aws-a/parked-pools")
        );
        let c = planned(&["ohfp", "getServiceHealth"]).unwrap();
        assert_eq!((c.method, c.path.as_str()), (Method::GET, "/health"));
        let c = planned(&["ohfp", "getProviderHealth"]).unwrap();
        assert_eq!(
            (c.method, c.path.as_str()),
            (Method::GET, "/api/v1/providers/health")
        );
        let c = planned(&["ohfp", "getProviderHealth", "--name", "sim-primary"]).unwrap();
        assert_eq!(c.path, "/api/v1/providers/sim-primary/health");
        let c = planned(&[
            "ohfp",
            "getProviderMetrics",
            "--data",
            r#"{"provider_name": "a b", "time_range_hours": 1}"#,
        ])
        .unwrap();
        assert_eq!(c.path, "/api/v1/providers/a%20b/metrics");
        assert_eq!(
            c.query,
            vec![("time_range_hours".to_string(), "1".to_string())]
        );
        let c = planned(&[
            "ohfp",
            "updateProviderStrategy",
            "--data",
            r#"{"strategy_name": "x", "provider_type": "simulated"}"#,
        ])
        .unwrap();
        assert_eq!(
            (c.method, c.path.as_str()),
            (Method::PUT, "/api/v1/providers/x")
        );
        assert_eq!(c.body.unwrap()["strategy_name"], "x");
        let c = planned(&["ohfp", "getRequestStatus", "--request-id", "req-1"]).unwrap();
        assert_eq!(
            (c.method, c.path.as_str()),
            (Method::GET, "/api/v1/requests/req-1")
        );
        let c = planned(&[
            "ohfp",
            "requestMachines",
            "--data",
            r#"{"template_id": "web", "machine_count": 2}"#,
        ])
        .unwrap();
        assert_eq!(
            (c.method, c.path.as_str()),
            (Method::POST, "/api/v1/requests")
        );
        assert!(
            planned(&["ohfp", "getRequestStatus"])
                .unwrap_err()
                .contains("--request-id")
        );
        let c = planned(&["ohfp", "unregisterProviderStrategy", "--name", "x"]).unwrap();
        assert_eq!((c.method, c.body), (Method::DELETE, None));
        let c = planned(&[
            "ohfp",
            "checkProviderHealth",
            "--data",
            r#"{"provider_name": "aws-primary"}"#,
        ])
        .unwrap();
        assert_eq!(
            (c.method, c.path.as_str(), c.body),
            (
                Method::POST,
                "/api/v1/providers/aws-primary/health/check",
                None
            )
        );
        assert!(c.query.is_empty());
    }

    #[test]
    fn hash_comments_outside_strings_are_ignored() {
        let text = "{\n\"a\": false # relax\n, \"b\": \"x # y\\\" # z\"}";
        let value: Value = serde_json::from_str(&without_comments(text)).unwrap();
        assert_eq!(value, serde_json::json!({"a": false, "b": "x # y\" # z"}));
    }

    #[test]
    fn weight_and_circuit_commands_name_their_path() {
        let data = r#"{"member": "aws", "weight": 0.8}"#;
        let c = planned(&["ohfp", "setStrategyWeight", "--name", "lb", "--data", data]).unwrap();
        assert_eq!(
            (c.method, c.path.as_str(), c.body),
            (
                Method::PUT,
                "/api/v1/providers/lb/weights/aws",
                Some(serde_json::json!({"weight": 0.8}))
            )
        );
        let c = planned(&[
            "ohfp",
            "setProviderCircuit",
            "--name",
            "a",
            "--data",
            r#"{"mode": "open"}"#,
        ])
        .unwrap();
        assert_eq!(
            (c.method, c.path.as_str()),
            (Method::PUT, "/api/v1/providers/a/circuit")
        );
    }

    /// A loopback server that answers each connection with `reply` (nothing: it closes the
    /// connection unanswered, as a dying replica does) and counts the connections.
    async fn replica(reply: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        (url, calls)
    }

    #[tokio::test]
    async fn calls_go_to_the_next_url_only_when_one_is_not_reached() {
        let closed = format!(
            "http://{}",
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        );
        let (dying, dying_calls) = replica("").await;
        let (failing, failing_calls) = replica(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        let (spare, spare_calls) = replica("").await;
        let client = http_client();
        let call = |base: &str| client.get(format!("{base}/health"));

        // Commas and spaces separate the URLs; an HTTP error is an answer, not tried again.
        let urls = format!("{closed}, {dying},{failing}  {spare}");
        let (res, base) = send_to_first_reachable(&urls, call).await.unwrap();
        assert_eq!((res.status().as_u16(), base), (503, failing.as_str()));
        assert_eq!(dying_calls.load(Ordering::SeqCst), 1);
        assert_eq!(failing_calls.load(Ordering::SeqCst), 1);
        assert_eq!(spare_calls.load(Ordering::SeqCst), 0);

        let why = send_to_first_reachable(&format!("{closed},{dying}"), call)
            .await
            .unwrap_err();
        assert!(why.contains(&format!("{closed}: ")), "{why}");
        assert!(why.contains(&format!("{dying}: ")), "{why}");
        assert!(
            send_to_first_reachable(" , ", call)
                .await
                .unwrap_err()
                .contains("no service URL")
        );
    }

    #[test]
    fn usage_errors_are_clear() {
        assert!(
            planned(&["ohfp", "executeProviderOperation"])
                .unwrap_err()
                .contains("needs a JSON body")
        );
        assert!(
            planned(&["ohfp", "getProviderCapabilities"])
                .unwrap_err()
                .contains("--name")
        );
        assert!(
            planned(&["ohfp", "selectProviderStrategy", "--data", "{oops"])
                .unwrap_err()
                .contains("not valid JSON")
        );
    }
}
