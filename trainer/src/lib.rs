//! Tributary's trainer: libtorch through tch.
//!
//! Models in Hugging Face layout ([`model`]), the project's own tiny base model ([`base`]),
//! tokenizers ([`tokenizer`]), LoRA adapters in PEFT's format ([`lora`]), the training loop
//! ([`train`]) and the job that turns a `train.toml` into an adapter published on chain
//! ([`job`]). [`check`] tests that libtorch computes on the chosen device. The binary links
//! libtorch from the project's venv (PyPI `torch==2.11.0`) with an rpath, so it runs without
//! `LD_LIBRARY_PATH`.
//!
//! ```no_run
//! let report = tributary_trainer::check(tributary_trainer::DeviceChoice::Auto).unwrap();
//! println!("{report}");
//! ```

pub mod attribute;
pub mod base;
pub mod influence;
pub mod job;
pub mod lora;
pub mod model;
pub mod planted;
pub mod plot;
pub mod schedule;
pub mod serve;
pub mod spans;
pub mod tokenizer;
pub mod train;

use std::fmt;

use tch::{Device, Kind, Tensor};

/// Errors from the trainer.
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
    /// libtorch failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
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

// Boxed: these are large, and the trainer's hot paths return `Result` everywhere.
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

/// Which device to compute on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA device; an error when there is none.
    Cuda,
}

impl DeviceChoice {
    /// Resolves the choice to a tch device.
    pub fn device(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cuda if tch::Cuda::is_available() => Ok(Device::Cuda(0)),
            DeviceChoice::Cuda => Err(Error::InvalidInput(
                "--device cuda: no CUDA device is visible to libtorch; use --device cpu".into(),
            )),
        }
    }
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchReport {
    /// The device used.
    pub device: String,
    /// CUDA devices visible.
    pub cuda_devices: i64,
    /// CPU threads libtorch uses.
    pub threads: i32,
    /// Result of the test computation (must be 0).
    pub max_error: f64,
}

impl fmt::Display for TorchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "libtorch ok on {} ({} CUDA device(s), {} CPU threads, matmul error {:.1e})",
            self.device, self.cuda_devices, self.threads, self.max_error
        )
    }
}

/// Runs a small matmul on the device and checks it against the exact answer.
pub fn check(choice: DeviceChoice) -> Result<TorchReport> {
    let device = choice.device()?;
    // (I · 2) @ ones = 2 everywhere: exact in floating point, so any error is a real fault.
    let a = Tensor::eye(64, (Kind::Float, device)) * 2.0;
    let b = Tensor::ones([64, 64], (Kind::Float, device));
    let max_error = (a.f_matmul(&b)? - 2.0).abs().max().double_value(&[]);
    Ok(TorchReport {
        device: format!("{device:?}"),
        cuda_devices: tch::Cuda::device_count(),
        threads: tch::get_num_threads(),
        max_error,
    })
}
