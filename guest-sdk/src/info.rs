//! [`AgentInfo`]: what an agent says about itself.

/// A named stream with a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name used for wiring.
    pub name: String,
    /// One line for humans.
    pub description: String,
}

/// A configuration key the agent accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    /// Key name.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// Whether `init` fails without it.
    pub required: bool,
    /// Value used when absent.
    pub default_value: Option<String>,
}

/// Description of an agent, built with chained calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// Short identifier.
    pub name: String,
    /// The agent's version (defaults to the SDK's crate version; set with [`AgentInfo::version`]).
    pub version: String,
    /// One paragraph for humans.
    pub description: String,
    /// Inputs, the first being the default one.
    pub inputs: Vec<StreamSpec>,
    /// Outputs.
    pub outputs: Vec<StreamSpec>,
    /// Accepted configuration keys.
    pub config: Vec<ConfigKey>,
}

impl AgentInfo {
    /// A new description with no streams or keys.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: "0.1.0".into(),
            description: description.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            config: Vec::new(),
        }
    }

    /// Sets the agent's version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Declares an input stream.
    pub fn input(mut self, name: impl Into<String>, description: impl Into<String>) -> Self {
        self.inputs.push(StreamSpec {
            name: name.into(),
            description: description.into(),
        });
        self
    }

    /// Declares an output stream.
    pub fn output(mut self, name: impl Into<String>, description: impl Into<String>) -> Self {
        self.outputs.push(StreamSpec {
            name: name.into(),
            description: description.into(),
        });
        self
    }

    /// Declares an optional configuration key with its default.
    pub fn config(
        mut self,
        name: impl Into<String>,
        description: impl Into<String>,
        default_value: Option<&str>,
    ) -> Self {
        self.config.push(ConfigKey {
            name: name.into(),
            description: description.into(),
            required: false,
            default_value: default_value.map(str::to_string),
        });
        self
    }

    /// Declares a required configuration key.
    pub fn required_config(
        mut self,
        name: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        self.config.push(ConfigKey {
            name: name.into(),
            description: description.into(),
            required: true,
            default_value: None,
        });
        self
    }
}
