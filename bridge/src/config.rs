//! zenoh configuration: zenoh's own configuration file, with the usual overrides on top.

use crate::error::{zenoh_err, BridgeError};
use std::path::PathBuf;
use zenoh::config::WhatAmI;
use zenoh::Wait;

/// The port the demo defaults listen on and connect to (zenoh's usual port).
pub const DEMO_PORT: u16 = 7447;

/// How a bridge joins the zenoh network: a zenoh configuration file (JSON5), and overrides
/// of its mode, endpoints and multicast scouting.
///
/// Without a file, zenoh's defaults apply except that multicast scouting is off (so nothing
/// leaves the host unless endpoints say so).
///
/// # Examples
/// ```
/// use shmcast_bridge::ZenohOptions;
/// let opts = ZenohOptions {
///     listen: vec!["tcp/127.0.0.1:7447".into()],
///     ..ZenohOptions::default()
/// };
/// let config = opts.to_config()?;
/// assert!(config.get_json("listen/endpoints").unwrap().contains("127.0.0.1:7447"));
/// # Ok::<(), shmcast_bridge::BridgeError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ZenohOptions {
    /// A zenoh configuration file; `None` starts from zenoh's defaults.
    pub config_file: Option<PathBuf>,
    /// `peer`, `client` or `router`; `None` keeps the file's mode (peer by default).
    pub mode: Option<WhatAmI>,
    /// Endpoints to listen on (e.g. `tcp/0.0.0.0:7447`); empty keeps the file's.
    pub listen: Vec<String>,
    /// Endpoints to connect to (e.g. `tcp/192.0.2.1:7447`); empty keeps the file's.
    pub connect: Vec<String>,
    /// Multicast scouting on or off; `None` keeps the file's setting, or off without a file.
    pub multicast_scouting: Option<bool>,
}

impl ZenohOptions {
    /// Peer mode, listening on loopback `port` only, multicast scouting off: the exporting
    /// side of a one-host demo.
    ///
    /// # Examples
    /// ```
    /// let opts = shmcast_bridge::ZenohOptions::loopback_listen(7447);
    /// assert_eq!(opts.listen, ["tcp/127.0.0.1:7447"]);
    /// ```
    pub fn loopback_listen(port: u16) -> ZenohOptions {
        ZenohOptions {
            mode: Some(WhatAmI::Peer),
            listen: vec![format!("tcp/127.0.0.1:{port}")],
            multicast_scouting: Some(false),
            ..ZenohOptions::default()
        }
    }

    /// Peer mode, connecting to loopback `port`, listening on loopback only (a port of the
    /// kernel's choice), multicast scouting off: the importing side of a one-host demo.
    ///
    /// # Examples
    /// ```
    /// let opts = shmcast_bridge::ZenohOptions::loopback_connect(7447);
    /// assert_eq!(opts.connect, ["tcp/127.0.0.1:7447"]);
    /// ```
    pub fn loopback_connect(port: u16) -> ZenohOptions {
        ZenohOptions {
            mode: Some(WhatAmI::Peer),
            listen: vec!["tcp/127.0.0.1:0".into()],
            connect: vec![format!("tcp/127.0.0.1:{port}")],
            multicast_scouting: Some(false),
            ..ZenohOptions::default()
        }
    }

    /// The zenoh configuration these options describe.
    ///
    /// # Errors
    /// [`BridgeError::Config`] if the file cannot be read or a value is refused.
    ///
    /// # Examples
    /// ```
    /// let mut opts = shmcast_bridge::ZenohOptions::default();
    /// opts.mode = Some(zenoh::config::WhatAmI::Client);
    /// opts.connect = vec!["tcp/127.0.0.1:7447".into()];
    /// let config = opts.to_config()?;
    /// assert_eq!(config.get_json("mode").unwrap(), "\"client\"");
    /// opts.connect = vec!["not an endpoint".into()];
    /// assert!(opts.to_config().is_err());
    /// # Ok::<(), shmcast_bridge::BridgeError>(())
    /// ```
    pub fn to_config(&self) -> Result<zenoh::Config, BridgeError> {
        let mut config = match &self.config_file {
            Some(path) => zenoh::Config::from_file(path)
                .map_err(|e| BridgeError::Config(format!("cannot load {}: {e}", path.display())))?,
            None => zenoh::Config::default(),
        };
        let mut set = |key: &str, value: String| {
            config
                .insert_json5(key, &value)
                .map_err(|e| BridgeError::Config(format!("{key} = {value}: {e}")))
        };
        if let Some(mode) = self.mode {
            set("mode", json_string(&mode.to_string()))?;
        }
        if !self.listen.is_empty() {
            set("listen/endpoints", json_array(&self.listen))?;
        }
        if !self.connect.is_empty() {
            set("connect/endpoints", json_array(&self.connect))?;
        }
        let multicast = self
            .multicast_scouting
            .or(self.config_file.is_none().then_some(false));
        if let Some(on) = multicast {
            set("scouting/multicast/enabled", on.to_string())?;
        }
        Ok(config)
    }

    /// Open a zenoh session with this configuration.
    ///
    /// # Errors
    /// As [`ZenohOptions::to_config`], or [`BridgeError::Zenoh`] if zenoh cannot start (for
    /// example, a listening port is taken).
    ///
    /// # Examples
    /// ```
    /// let opts = shmcast_bridge::ZenohOptions {
    ///     listen: vec!["tcp/127.0.0.1:0".into()],
    ///     ..Default::default()
    /// };
    /// let session = opts.open()?;
    /// # drop(session);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(&self) -> Result<zenoh::Session, BridgeError> {
        let config = self.to_config()?;
        zenoh::open(config)
            .wait()
            .map_err(zenoh_err("cannot open the zenoh session"))
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_array(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", inner.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_file_multicast_scouting_is_off() {
        let config = ZenohOptions::default().to_config().unwrap();
        assert_eq!(
            config.get_json("scouting/multicast/enabled").unwrap(),
            "false"
        );
    }

    #[test]
    fn strings_are_escaped_for_json() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_array(&["x".into(), "y".into()]), "[\"x\",\"y\"]");
    }

    #[test]
    fn a_missing_file_is_a_config_error() {
        let opts = ZenohOptions {
            config_file: Some("/nonexistent/zenoh.json5".into()),
            ..ZenohOptions::default()
        };
        assert!(matches!(opts.to_config(), Err(BridgeError::Config(_))));
    }
}
