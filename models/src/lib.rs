//! Tributary's models: what turns frozen Datanet snapshots into published adapters and
//! serves them, on top of the compute in `tributary-trainer`, the chain, the lake and the
//! store.
//!
//! - [`catalog`]: published adapters (found from the registry's logs), their manifests, files
//!   and base models in the lake.
//! - [`job`]: a `train.toml` run to a published adapter, in steps: resolve the base model and
//!   parents, freeze or load the snapshot, train, store in the lake, publish on chain.
//! - [`attribute`]: which contributions shaped one answer, in contributors' terms, and the
//!   adapter's attribution over its held-out set recorded in the lake.
//! - [`schedule`]: jobs on cron schedules, with leases in the store so one worker runs each.
//! - [`serve`]: many adapters on one base model, each answer's ancestry, attribution and
//!   ledger record, and the inference ledger that anchors answers (`tributary-api`'s `/v1`
//!   routes serve them over HTTP).

pub mod attribute;
pub mod catalog;
pub mod job;
pub mod schedule;
pub mod serve;
pub mod usage;

pub use tributary_trainer::DeviceChoice;

/// Errors from training, publishing and serving models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's mistake: a bad setting, spec or request; the message says how to fix it.
    #[error("{0}")]
    InvalidInput(String),
    /// What the caller named does not exist (an adapter not published on this chain).
    #[error("{0}")]
    NotFound(String),
    /// Tributary failed: a worker thread stopped, a file it wrote is unreadable.
    #[error("internal error: {0}")]
    Internal(String),
    /// The compute failed (libtorch, or a model file).
    #[error(transparent)]
    Compute(Box<tributary_trainer::Error>),
    /// Reading or writing a file failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// The chain failed.
    #[error(transparent)]
    Chain(Box<tributary_chain::Error>),
    /// The lake failed.
    #[error(transparent)]
    Lake(Box<tributary_lake::Error>),
    /// Reading a snapshot or a Datanet failed.
    #[error(transparent)]
    Pipeline(Box<tributary_pipeline::Error>),
    /// A scheduled run's worker no longer holds its lease: another worker took the run over,
    /// and this one must not publish.
    #[error("lease lost: {0}")]
    LeaseLost(String),
}

impl Error {
    /// A worker thread that panicked or was cancelled, as an internal error.
    pub fn joined(e: tokio::task::JoinError) -> Self {
        Error::Internal(format!("a worker thread failed: {e}"))
    }
}

/// The trainer's errors keep whose fault they are: its invalid input is the caller's here too.
impl From<tributary_trainer::Error> for Error {
    fn from(e: tributary_trainer::Error) -> Self {
        use tributary_trainer::Error as T;
        match e {
            T::InvalidInput(m) => Error::InvalidInput(m),
            T::NotFound(m) => Error::NotFound(m),
            T::Internal(m) => Error::Internal(m),
            T::Io(what, e) => Error::Io(what, e),
            e @ T::Torch(_) => Error::Compute(Box::new(e)),
        }
    }
}

// Boxed: these are large, and the hot paths return `Result` everywhere.
impl From<tributary_chain::Error> for Error {
    fn from(e: tributary_chain::Error) -> Self {
        Error::Chain(Box::new(e))
    }
}

impl From<tributary_lake::Error> for Error {
    fn from(e: tributary_lake::Error) -> Self {
        Error::Lake(Box::new(e))
    }
}

impl From<tributary_pipeline::Error> for Error {
    fn from(e: tributary_pipeline::Error) -> Self {
        Error::Pipeline(Box::new(e))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
