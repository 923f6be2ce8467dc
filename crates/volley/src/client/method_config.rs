//! The per-method part of a service config (`methodConfig`, `doc/service_config.md` and
//! grpc's `grpc/service_config/service_config.proto`), and `retryThrottling` (gRFC A6).
//! Every error names the JSON path of the value at fault.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::{Code, Error};

/// A service config's settings for one method (or a service, or every method): what a call
/// uses unless it sets its own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MethodConfig {
    /// Whether calls wait for a READY connection (`waitForReady`); a call's own setting wins.
    pub wait_for_ready: Option<bool>,
    /// The calls' timeout (`timeout`); a call's own timeout wins if sooner.
    pub timeout: Option<Duration>,
    /// The largest request message (`maxRequestMessageBytes`); the client's own limit wins if
    /// smaller.
    pub max_request_message_bytes: Option<usize>,
    /// The largest response message (`maxResponseMessageBytes`); the client's own limit wins
    /// if smaller.
    pub max_response_message_bytes: Option<usize>,
    /// How failed calls are retried (`retryPolicy`, gRFC A6).
    pub retry_policy: Option<RetryPolicy>,
    /// How calls are hedged (`hedgingPolicy`, gRFC A6).
    pub hedging_policy: Option<HedgingPolicy>,
}

/// `retryPolicy` (gRFC A6): a call that fails with one of `retryable_status_codes` before it
/// is committed is tried again after an exponential, jittered backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included: at least 2. A call makes at most the channel's
    /// `max_call_attempts` (default 5), whatever the policy says.
    pub max_attempts: u32,
    /// The first backoff's upper bound (each backoff is random in [0, bound]).
    pub initial_backoff: Duration,
    /// The bound's ceiling.
    pub max_backoff: Duration,
    /// What the bound is multiplied by after each attempt.
    pub backoff_multiplier: f64,
    /// The codes that are retried.
    pub retryable_status_codes: Vec<Code>,
}

/// `hedgingPolicy` (gRFC A6): up to `max_attempts` copies of a call are sent, one every
/// `hedging_delay`; the first response wins.
#[derive(Debug, Clone, PartialEq)]
pub struct HedgingPolicy {
    /// Attempts in all: at least 2. A call makes at most the channel's
    /// `max_call_attempts` (default 5), whatever the policy says.
    pub max_attempts: u32,
    /// The delay between attempts (0: all at once).
    pub hedging_delay: Duration,
    /// Codes after which the other attempts go on (any other code ends the call).
    pub non_fatal_status_codes: Vec<Code>,
}

/// `retryThrottling` (gRFC A6): a per-channel token bucket; retries and hedges stop while
/// it holds half its tokens or less.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryThrottling {
    /// The bucket's size, 1 to 1000.
    pub max_tokens: u32,
    /// What a success puts back (failures take 1), over 0, to three decimals.
    pub token_ratio: f64,
}

/// The method configs of a service config, found by a call's path.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct MethodConfigs {
    /// Keyed `service/method`.
    by_method: HashMap<String, Arc<MethodConfig>>,
    /// Keyed `service` (a whole service).
    by_service: HashMap<String, Arc<MethodConfig>>,
    /// The entry named `{}`.
    default: Option<Arc<MethodConfig>>,
}

impl MethodConfigs {
    /// The config for a call to `/service/method`: the method's, else its service's, else
    /// the default.
    pub(crate) fn find(&self, path: &str) -> Option<&Arc<MethodConfig>> {
        let name = crate::method_path::name(path);
        let service = crate::method_path::split_name(name).map_or("", |(s, _)| s);
        self.by_method
            .get(name)
            .or_else(|| self.by_service.get(service))
            .or(self.default.as_ref())
    }

    /// Parses `methodConfig`.
    pub(crate) fn parse(list: &Value) -> Result<MethodConfigs, Error> {
        let list = list
            .as_array()
            .ok_or_else(|| invalid("methodConfig", "not a list"))?;
        let mut configs = MethodConfigs::default();
        for (i, entry) in list.iter().enumerate() {
            let at = format!("methodConfig[{i}]");
            let object = entry
                .as_object()
                .ok_or_else(|| invalid(&at, "not an object"))?;
            let config = Arc::new(parse_method(entry, &at)?);
            let names = match object.get("name") {
                None => &Vec::new(),
                Some(v) => v
                    .as_array()
                    .ok_or_else(|| invalid(&format!("{at}.name"), "not a list"))?,
            };
            for (j, name) in names.iter().enumerate() {
                let at = format!("{at}.name[{j}]");
                let field = |key: &str| -> Result<String, Error> {
                    match name.get(key) {
                        None | Some(Value::Null) => Ok(String::new()),
                        Some(Value::String(s)) => Ok(s.clone()),
                        Some(_) => Err(invalid(&format!("{at}.{key}"), "not a string")),
                    }
                };
                if !name.is_object() {
                    return Err(invalid(&at, "not an object"));
                }
                let (service, method) = (field("service")?, field("method")?);
                if service.is_empty() && !method.is_empty() {
                    return Err(invalid(&at, "a method needs its service"));
                }
                let previous = if service.is_empty() {
                    configs.default.replace(config.clone())
                } else if method.is_empty() {
                    configs.by_service.insert(service, config.clone())
                } else {
                    configs
                        .by_method
                        .insert(format!("{service}/{method}"), config.clone())
                };
                if previous.is_some() {
                    return Err(invalid(&at, "names a method another entry names"));
                }
            }
        }
        Ok(configs)
    }
}

fn invalid(at: &str, why: &str) -> Error {
    Error::new(format!("invalid service config: {at}: {why}"))
}

/// A protobuf JSON `Duration`: `"1.5s"` (at most 9 decimals, not negative).
pub(crate) fn duration(value: &Value, at: &str) -> Result<Duration, Error> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid(at, "not a duration string like \"1.5s\""))?;
    let number = text
        .strip_suffix('s')
        .ok_or_else(|| invalid(at, "a duration ends in \"s\""))?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!fraction.is_empty() && !digits(fraction)) || fraction.len() > 9 {
        return Err(invalid(at, "not a duration string like \"1.5s\""));
    }
    let seconds: u64 = whole
        .parse()
        .map_err(|_| invalid(at, "the duration is too long"))?;
    let nanos: u32 = format!("{fraction:0<9}")
        .parse()
        .map_err(|_| invalid(at, "not a duration string like \"1.5s\""))?;
    Ok(crate::timeout::capped(Duration::new(seconds, nanos)))
}

fn positive_duration(value: Option<&Value>, at: &str) -> Result<Duration, Error> {
    let value = value.ok_or_else(|| invalid(at, "required"))?;
    let d = duration(value, at)?;
    if d.is_zero() {
        return Err(invalid(at, "must be more than 0"));
    }
    Ok(d)
}

fn attempts(value: Option<&Value>, at: &str) -> Result<u32, Error> {
    let n = value
        .ok_or_else(|| invalid(at, "required"))?
        .as_u64()
        .ok_or_else(|| invalid(at, "not a whole number"))?;
    if n < 2 {
        return Err(invalid(at, "must be at least 2"));
    }
    Ok(n.min(u64::from(u32::MAX)) as u32)
}

/// A list of status codes, by name (`"UNAVAILABLE"`) or number.
fn codes(value: &Value, at: &str) -> Result<Vec<Code>, Error> {
    let list = value.as_array().ok_or_else(|| invalid(at, "not a list"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, code) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let code = match code {
            Value::String(name) => Code::ALL
                .iter()
                .copied()
                .find(|c| c.name() == name)
                .ok_or_else(|| invalid(&at, "not a status code name"))?,
            Value::Number(n) => n
                .as_u64()
                .filter(|n| *n <= 16)
                .map(|n| Code::from_i32(n as i32))
                .ok_or_else(|| invalid(&at, "not a status code number (0 to 16)"))?,
            _ => return Err(invalid(&at, "not a status code")),
        };
        if code == Code::Ok {
            return Err(invalid(&at, "OK is not a failure"));
        }
        out.push(code);
    }
    Ok(out)
}

fn message_bytes(value: &Value, at: &str) -> Result<usize, Error> {
    value
        .as_u64()
        .filter(|n| *n <= u64::from(u32::MAX))
        .map(|n| n as usize)
        .ok_or_else(|| invalid(at, "not a whole number of bytes (at most 2^32-1)"))
}

fn parse_method(entry: &Value, at: &str) -> Result<MethodConfig, Error> {
    let mut config = MethodConfig::default();
    let get = |key: &str| entry.get(key).filter(|v| !v.is_null());
    if let Some(v) = get("waitForReady") {
        config.wait_for_ready = Some(
            v.as_bool()
                .ok_or_else(|| invalid(&format!("{at}.waitForReady"), "not a boolean"))?,
        );
    }
    if let Some(v) = get("timeout") {
        config.timeout = Some(duration(v, &format!("{at}.timeout"))?);
    }
    if let Some(v) = get("maxRequestMessageBytes") {
        config.max_request_message_bytes =
            Some(message_bytes(v, &format!("{at}.maxRequestMessageBytes"))?);
    }
    if let Some(v) = get("maxResponseMessageBytes") {
        config.max_response_message_bytes =
            Some(message_bytes(v, &format!("{at}.maxResponseMessageBytes"))?);
    }
    if let (Some(_), Some(_)) = (get("retryPolicy"), get("hedgingPolicy")) {
        return Err(invalid(
            at,
            "retryPolicy and hedgingPolicy exclude each other",
        ));
    }
    if let Some(p) = get("retryPolicy") {
        let at = format!("{at}.retryPolicy");
        if !p.is_object() {
            return Err(invalid(&at, "not an object"));
        }
        let multiplier_at = format!("{at}.backoffMultiplier");
        let backoff_multiplier = p
            .get("backoffMultiplier")
            .ok_or_else(|| invalid(&multiplier_at, "required"))?
            .as_f64()
            .filter(|m| *m > 0.0 && m.is_finite())
            .ok_or_else(|| invalid(&multiplier_at, "must be a number over 0"))?;
        let codes_at = format!("{at}.retryableStatusCodes");
        let retryable_status_codes = codes(
            p.get("retryableStatusCodes")
                .ok_or_else(|| invalid(&codes_at, "required"))?,
            &codes_at,
        )?;
        if retryable_status_codes.is_empty() {
            return Err(invalid(&codes_at, "must not be empty"));
        }
        config.retry_policy = Some(RetryPolicy {
            max_attempts: attempts(p.get("maxAttempts"), &format!("{at}.maxAttempts"))?,
            initial_backoff: positive_duration(
                p.get("initialBackoff"),
                &format!("{at}.initialBackoff"),
            )?,
            max_backoff: positive_duration(p.get("maxBackoff"), &format!("{at}.maxBackoff"))?,
            backoff_multiplier,
            retryable_status_codes,
        });
    }
    if let Some(p) = get("hedgingPolicy") {
        let at = format!("{at}.hedgingPolicy");
        if !p.is_object() {
            return Err(invalid(&at, "not an object"));
        }
        let hedging_delay = match p.get("hedgingDelay").filter(|v| !v.is_null()) {
            None => Duration::ZERO,
            Some(v) => duration(v, &format!("{at}.hedgingDelay"))?,
        };
        let non_fatal_status_codes = match p.get("nonFatalStatusCodes") {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => codes(v, &format!("{at}.nonFatalStatusCodes"))?,
        };
        config.hedging_policy = Some(HedgingPolicy {
            max_attempts: attempts(p.get("maxAttempts"), &format!("{at}.maxAttempts"))?,
            hedging_delay,
            non_fatal_status_codes,
        });
    }
    Ok(config)
}

impl RetryThrottling {
    /// Parses `retryThrottling`.
    pub(crate) fn parse(value: &Value) -> Result<RetryThrottling, Error> {
        let at = "retryThrottling";
        if !value.is_object() {
            return Err(invalid(at, "not an object"));
        }
        let max_tokens = value
            .get("maxTokens")
            .ok_or_else(|| invalid("retryThrottling.maxTokens", "required"))?
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("retryThrottling.maxTokens", "must be a whole number over 0"))?
            .min(1000) as u32;
        let token_ratio = value
            .get("tokenRatio")
            .ok_or_else(|| invalid("retryThrottling.tokenRatio", "required"))?
            .as_f64()
            .filter(|r| *r > 0.0 && r.is_finite())
            .ok_or_else(|| invalid("retryThrottling.tokenRatio", "must be a number over 0"))?;
        // A6: the ratio has three decimals; more are dropped.
        let token_ratio = (token_ratio * 1000.0).trunc() / 1000.0;
        if token_ratio <= 0.0 {
            return Err(invalid(
                "retryThrottling.tokenRatio",
                "must be at least 0.001",
            ));
        }
        Ok(RetryThrottling {
            max_tokens,
            token_ratio,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<MethodConfigs, Error> {
        MethodConfigs::parse(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn names_match_method_then_service_then_default() {
        let c = parse(
            r#"[
              {"name": [{"service": "a.S", "method": "M"}], "timeout": "1s"},
              {"name": [{"service": "a.S"}], "timeout": "2s"},
              {"name": [{}], "timeout": "3s", "waitForReady": true}
            ]"#,
        )
        .unwrap();
        let timeout = |path| c.find(path).and_then(|m| m.timeout);
        assert_eq!(timeout("/a.S/M"), Some(Duration::from_secs(1)));
        assert_eq!(timeout("/a.S/N"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("/b.T/M"), Some(Duration::from_secs(3)));
        assert_eq!(c.find("/b.T/M").unwrap().wait_for_ready, Some(true));
        assert!(parse("[]").unwrap().find("/a.S/M").is_none());
    }

    #[test]
    fn policies_are_parsed_and_checked_with_the_path_of_the_fault() {
        let c = parse(
            r#"[{"name": [{"service": "a.S"}],
                 "maxRequestMessageBytes": 1024, "maxResponseMessageBytes": "2048",
                 "retryPolicy": {"maxAttempts": 9, "initialBackoff": "0.1s",
                   "maxBackoff": "1.5s", "backoffMultiplier": 2,
                   "retryableStatusCodes": ["UNAVAILABLE", 10]}}]"#,
        );
        // A UInt32Value is a JSON number (grpc-go reads it into a uint32): a string is refused.
        let e = c.unwrap_err().to_string();
        assert!(e.contains("methodConfig[0].maxResponseMessageBytes"), "{e}");

        let c = parse(
            r#"[{"name": [{"service": "a.S"}],
                 "retryPolicy": {"maxAttempts": 9, "initialBackoff": "0.1s",
                   "maxBackoff": "1.5s", "backoffMultiplier": 2,
                   "retryableStatusCodes": ["UNAVAILABLE", 10]}}]"#,
        )
        .unwrap();
        let p = c.find("/a.S/M").unwrap().retry_policy.clone().unwrap();
        assert_eq!(p.max_attempts, 9, "capped per call, by the channel");
        assert_eq!(p.initial_backoff, Duration::from_millis(100));
        assert_eq!(p.max_backoff, Duration::from_millis(1500));
        assert_eq!(p.retryable_status_codes, [Code::Unavailable, Code::Aborted]);

        for (json, path) in [
            (r#"[{"name":[{"method":"M"}]}]"#, "methodConfig[0].name[0]"),
            (
                r#"[{"name":[{"service":"s"}]},{"name":[{"service":"s"}]}]"#,
                "methodConfig[1].name[0]",
            ),
            (r#"[{"timeout":"1m"}]"#, "methodConfig[0].timeout"),
            (r#"[{"timeout":"-1s"}]"#, "methodConfig[0].timeout"),
            (
                r#"[{"retryPolicy":{"maxAttempts":1,"initialBackoff":"1s","maxBackoff":"1s","backoffMultiplier":1,"retryableStatusCodes":["UNAVAILABLE"]}}]"#,
                "methodConfig[0].retryPolicy.maxAttempts",
            ),
            (
                r#"[{"retryPolicy":{"maxAttempts":2,"initialBackoff":"0s","maxBackoff":"1s","backoffMultiplier":1,"retryableStatusCodes":["UNAVAILABLE"]}}]"#,
                "methodConfig[0].retryPolicy.initialBackoff",
            ),
            (
                r#"[{"retryPolicy":{"maxAttempts":2,"initialBackoff":"1s","maxBackoff":"1s","backoffMultiplier":1,"retryableStatusCodes":[]}}]"#,
                "methodConfig[0].retryPolicy.retryableStatusCodes",
            ),
            (
                r#"[{"retryPolicy":{"maxAttempts":2,"initialBackoff":"1s","maxBackoff":"1s","backoffMultiplier":1,"retryableStatusCodes":["NOPE"]}}]"#,
                "methodConfig[0].retryPolicy.retryableStatusCodes[0]",
            ),
            (
                r#"[{"retryPolicy":{}, "hedgingPolicy":{}}]"#,
                "methodConfig[0]: retryPolicy and hedgingPolicy",
            ),
            (
                r#"[{"hedgingPolicy":{"maxAttempts":3,"hedgingDelay":"x"}}]"#,
                "methodConfig[0].hedgingPolicy.hedgingDelay",
            ),
        ] {
            let e = parse(json).unwrap_err().to_string();
            assert!(e.contains(path), "{json}: {e}");
        }

        let c = parse(r#"[{"name":[{}],"hedgingPolicy":{"maxAttempts":3,"hedgingDelay":"0.01s","nonFatalStatusCodes":["UNAVAILABLE"]}}]"#).unwrap();
        let h = c.find("/x.Y/Z").unwrap().hedging_policy.clone().unwrap();
        assert_eq!(h.hedging_delay, Duration::from_millis(10));
        assert_eq!(h.non_fatal_status_codes, [Code::Unavailable]);
    }

    #[test]
    fn throttling_is_bounded_and_its_ratio_has_three_decimals() {
        let t = |json: &str| RetryThrottling::parse(&serde_json::from_str(json).unwrap());
        let r = t(r#"{"maxTokens": 5000, "tokenRatio": 0.12345}"#).unwrap();
        assert_eq!(r.max_tokens, 1000);
        assert_eq!(r.token_ratio, 0.123);
        assert!(t(r#"{"maxTokens": 0, "tokenRatio": 1}"#).is_err());
        assert!(t(r#"{"maxTokens": 10, "tokenRatio": 0.0001}"#).is_err());
        assert!(t(r#"{"maxTokens": 10}"#).is_err());
    }
}
