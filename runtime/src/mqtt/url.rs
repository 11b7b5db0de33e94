//! `--mqtt mqtt://HOST[:PORT]/TOPIC`: where results are published.
//!
//! Parsed by hand rather than with `url`: only one form is meaningful here, and each way it can
//! be wrong gets an error that says what to write instead.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// The broker's default plain-TCP port.
pub const DEFAULT_PORT: u16 = 1883;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttUrl {
    pub host: String,
    pub port: u16,
    /// Frame results are published here, the run summary on `TOPIC/summary`.
    pub topic: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("--mqtt {url:?}: {reason} (expected mqtt://HOST[:PORT]/TOPIC, e.g. mqtt://127.0.0.1:1883/sitfer/cam0)")]
pub struct MqttUrlError {
    pub url: String,
    pub reason: String,
}

impl MqttUrl {
    /// Where the run summary goes: beside the frames, so `TOPIC/#` receives both.
    pub fn summary_topic(&self) -> String {
        format!("{}/summary", self.topic)
    }
}

impl fmt::Display for MqttUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}/{}", self.host, self.port, self.topic)
        } else {
            write!(f, "mqtt://{}:{}/{}", self.host, self.port, self.topic)
        }
    }
}

impl FromStr for MqttUrl {
    type Err = MqttUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| MqttUrlError {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some(("mqtts" | "ssl" | "ws" | "wss", _)) => {
                return Err(err(
                    "only plain mqtt:// is supported (this build has no TLS or websockets)",
                ));
            }
            Some((scheme, _)) => return Err(err(&format!("unknown scheme {scheme:?}"))),
            None => return Err(err("no scheme")),
        };
        let (authority, topic) = rest.split_once('/').ok_or_else(|| err("no topic after the host"))?;
        if authority.contains('@') {
            return Err(err("user names and passwords are not supported"));
        }
        let (host, port) = split_host_port(authority).map_err(|r| err(&r))?;
        if host.is_empty() {
            return Err(err("no host"));
        }
        if topic.is_empty() {
            return Err(err("empty topic"));
        }
        if topic.contains(['+', '#']) {
            return Err(err(
                "the topic has a wildcard (+ or #): results need one concrete topic",
            ));
        }
        if topic.contains(['?', '\0']) {
            return Err(err("the topic has a '?' or NUL character"));
        }
        Ok(MqttUrl {
            host,
            port,
            topic: topic.to_string(),
        })
    }
}

fn split_host_port(authority: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("unclosed '[' in an IPv6 host")?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or("text after the IPv6 host's ']'")?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return Err("an IPv6 host needs brackets: [::1]".into()),
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("port {p:?} is not a number from 1 to 65535")),
            Ok(n) => n,
        },
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> MqttUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn host_port_and_topic_with_levels() {
        let u = ok("mqtt://broker.local:1884/sitfer/cam0");
        assert_eq!(
            (u.host.as_str(), u.port, u.topic.as_str()),
            ("broker.local", 1884, "sitfer/cam0")
        );
        assert_eq!(u.summary_topic(), "sitfer/cam0/summary");
        assert_eq!(ok("mqtt://10.0.0.2/t").port, DEFAULT_PORT);
        let v6 = ok("mqtt://[::1]:1990/t");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1990));
        assert_eq!(v6.to_string(), "mqtt://[::1]:1990/t");
        assert_eq!(ok("tcp://h:1/x").to_string(), "mqtt://h:1/x");
    }

    #[test]
    fn each_mistake_is_named_with_the_flag() {
        for (url, says) in [
            ("broker:1883/t", "no scheme"),
            ("http://broker/t", "unknown scheme \"http\""),
            ("mqtts://broker/t", "only plain mqtt://"),
            ("mqtt://broker:1883", "no topic"),
            ("mqtt://broker:1883/", "empty topic"),
            ("mqtt://:1883/t", "no host"),
            ("mqtt://broker:99999/t", "port \"99999\""),
            ("mqtt://broker:0/t", "port \"0\""),
            ("mqtt://broker:x/t", "port \"x\""),
            ("mqtt://broker/a/#", "wildcard"),
            ("mqtt://broker/+/b", "wildcard"),
            ("mqtt://u:p@broker/t", "passwords"),
            ("mqtt://::1/t", "brackets"),
            ("mqtt://[::1/t", "unclosed"),
        ] {
            let e = url.parse::<MqttUrl>().expect_err(url).to_string();
            assert!(e.starts_with("--mqtt ") && e.contains(says), "{url}: {e}");
        }
    }
}
