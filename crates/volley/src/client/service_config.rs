//! [`ServiceConfig`]: gRPC's service config (`doc/service_config.md`): the load-balancing
//! choice, client-side health checking, per-method settings (timeouts, wait-for-ready,
//! message limits, retry and hedging policies) and retry throttling.

use std::sync::Arc;

use super::method_config::{MethodConfig, MethodConfigs, RetryThrottling};
use super::retry::Throttle;
use crate::Error;

/// A service config (`doc/service_config.md`), as a resolver may deliver it with addresses or
/// a channel may have by default ([`crate::ChannelBuilder::default_service_config`]): the
/// load-balancing choice (the first policy of `loadBalancingConfig` that is registered and
/// accepts its config, or the older `loadBalancingPolicy`), `healthCheckConfig`,
/// `methodConfig` and `retryThrottling`. Parsing checks every field and names the JSON path
/// of the first fault.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    json: serde_json::Value,
    policies: Vec<String>,
    /// Each `loadBalancingConfig` entry: the policy's name and its config.
    balancer_configs: Vec<(String, serde_json::Value)>,
    health_check: Option<String>,
    methods: MethodConfigs,
    retry_throttling: Option<RetryThrottling>,
    /// The token bucket of `retry_throttling`, shared by the calls made under this config.
    throttle: Option<Arc<Throttle>>,
}

impl ServiceConfig {
    /// Parses a service config from its JSON form, e.g.
    /// `{"loadBalancingConfig": [{"round_robin": {}}]}`.
    pub fn from_json(json: &str) -> Result<ServiceConfig, Error> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::new(format!("invalid service config: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| Error::new("invalid service config: not a JSON object"))?;
        let mut policies = Vec::new();
        let mut balancer_configs = Vec::new();
        if let Some(list) = object.get("loadBalancingConfig") {
            let list = list.as_array().ok_or_else(|| {
                Error::new("invalid service config: loadBalancingConfig is not a list")
            })?;
            for entry in list {
                let entry = entry.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
                    Error::new(
                        "invalid service config: each loadBalancingConfig entry is an object \
                         with one policy name",
                    )
                })?;
                for (name, config) in entry {
                    policies.push(name.clone());
                    balancer_configs.push((name.clone(), config.clone()));
                }
            }
        }
        if let Some(policy) = object.get("loadBalancingPolicy") {
            let policy = policy.as_str().ok_or_else(|| {
                Error::new("invalid service config: loadBalancingPolicy is not a string")
            })?;
            // The old field names policies in upper case ("ROUND_ROBIN").
            policies.push(policy.to_ascii_lowercase());
            balancer_configs.push((policy.to_ascii_lowercase(), serde_json::json!({})));
        }
        // gRFC A17: {"healthCheckConfig": {"serviceName": "..."}} turns client-side health
        // checking on ("" is the server as a whole).
        let health_check = match object.get("healthCheckConfig") {
            None => None,
            Some(config) => Some(
                config
                    .get("serviceName")
                    .map(|name| {
                        name.as_str().map(str::to_owned).ok_or_else(|| {
                            Error::new(
                                "invalid service config: healthCheckConfig.serviceName is not a string",
                            )
                        })
                    })
                    .transpose()?
                    .unwrap_or_default(),
            ),
        };
        let methods = match object.get("methodConfig") {
            None | Some(serde_json::Value::Null) => MethodConfigs::default(),
            Some(list) => MethodConfigs::parse(list)?,
        };
        let retry_throttling = match object.get("retryThrottling") {
            None | Some(serde_json::Value::Null) => None,
            Some(t) => Some(RetryThrottling::parse(t)?),
        };
        Ok(ServiceConfig {
            json: value,
            policies,
            balancer_configs,
            health_check,
            methods,
            throttle: retry_throttling.map(|t| Arc::new(Throttle::new(t))),
            retry_throttling,
        })
    }

    /// A service config that picks the balancer `policy` (e.g. `round_robin`).
    pub fn with_load_balancing_policy(policy: &str) -> ServiceConfig {
        let json = serde_json::json!({ "loadBalancingConfig": [{ policy: {} }] });
        ServiceConfig {
            json,
            policies: vec![policy.to_owned()],
            balancer_configs: vec![(policy.to_owned(), serde_json::json!({}))],
            health_check: None,
            methods: MethodConfigs::default(),
            retry_throttling: None,
            throttle: None,
        }
    }

    /// The balancer names the config asks for, in order of preference.
    pub fn load_balancing_policies(&self) -> &[String] {
        &self.policies
    }

    /// The `loadBalancingConfig` entries in order, each a policy's name and its JSON config
    /// (the older `loadBalancingPolicy` field last, with an empty config).
    pub fn load_balancing_configs(&self) -> &[(String, serde_json::Value)] {
        &self.balancer_configs
    }

    /// The service that subchannels health-check (`healthCheckConfig.serviceName`, gRFC
    /// A17), when the config turns client-side health checking on.
    pub fn health_check_service(&self) -> Option<&str> {
        self.health_check.as_deref()
    }

    /// The settings for calls to `path` (`/package.Service/Method`): the method's own entry,
    /// else its service's, else the default entry (`"name": [{}]`).
    pub fn method_config(&self, path: &str) -> Option<&Arc<MethodConfig>> {
        self.methods.find(path)
    }

    /// The retry throttling (`retryThrottling`), if the config sets it.
    pub fn retry_throttling(&self) -> Option<RetryThrottling> {
        self.retry_throttling
    }

    pub(crate) fn throttle(&self) -> Option<&Arc<Throttle>> {
        self.throttle.as_ref()
    }

    /// Takes over `previous`'s token bucket when both configure the same one, so that a
    /// resolver sending its config again does not refill the bucket (gRFC A6 keeps one per
    /// server name).
    pub(crate) fn keep_throttle_of(&mut self, previous: &ServiceConfig) {
        if let (Some(mine), Some(theirs)) = (&self.throttle, &previous.throttle)
            && mine == theirs
        {
            self.throttle = Some(theirs.clone());
        }
    }

    /// The whole config as JSON.
    pub fn to_json(&self) -> String {
        self.json.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_balancing_choice() {
        let c = ServiceConfig::from_json(
            r#"{"loadBalancingConfig": [{"weird_policy": {}}, {"round_robin": {}}]}"#,
        )
        .unwrap();
        assert_eq!(c.load_balancing_policies(), ["weird_policy", "round_robin"]);
        let c = ServiceConfig::from_json(r#"{"loadBalancingPolicy": "ROUND_ROBIN"}"#).unwrap();
        assert_eq!(c.load_balancing_policies(), ["round_robin"]);
        let c = ServiceConfig::from_json("{}").unwrap();
        assert!(c.load_balancing_policies().is_empty());
        assert!(ServiceConfig::from_json("[]").is_err());
        assert!(ServiceConfig::from_json(r#"{"loadBalancingConfig": [{"a":{},"b":{}}]}"#).is_err());
        assert!(ServiceConfig::from_json("{").is_err());
        let c = ServiceConfig::with_load_balancing_policy("pick_first");
        assert_eq!(
            ServiceConfig::from_json(&c.to_json())
                .unwrap()
                .load_balancing_policies(),
            ["pick_first"]
        );
    }

    #[test]
    fn a_config_sent_again_keeps_its_throttle() {
        let json = r#"{"retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1}}"#;
        let first = ServiceConfig::from_json(json).unwrap();
        let mut again = ServiceConfig::from_json(json).unwrap();
        let same = |a: &ServiceConfig, b: &ServiceConfig| {
            Arc::ptr_eq(a.throttle().unwrap(), b.throttle().unwrap())
        };
        assert!(!same(&first, &again));
        again.keep_throttle_of(&first);
        assert!(same(&first, &again));
        let mut other = ServiceConfig::from_json(
            r#"{"retryThrottling": {"maxTokens": 20, "tokenRatio": 0.1}}"#,
        )
        .unwrap();
        other.keep_throttle_of(&first);
        assert!(
            !same(&first, &other),
            "another bucket size is another bucket"
        );
    }
}
