//! Tributary's trainer: model compute on libtorch through tch, and nothing else (no chain,
//! lake or store: `tributary-models` runs jobs and serving on top of it).
//!
//! Models in Hugging Face layout ([`model`]), the project's own tiny base model ([`base`]),
//! tokenizers ([`tokenizer`]), LoRA adapters in PEFT's format ([`lora`]), the training loop
//! ([`train`]), gradient influence ([`influence`]) and span ([`spans`]) indexes, scoring an
//! answer against them ([`attribute`]), the batched multi-adapter decoding engine
//! ([`engine`]) and loss curves ([`plot`]). [`check`] tests that libtorch computes on the
//! chosen device. The binary links
//! libtorch from the project's venv (PyPI `torch==2.11.0`) with an rpath, so it runs without
//! `LD_LIBRARY_PATH`.
//!
//! ```no_run
//! let report = tributary_trainer::check(tributary_trainer::DeviceChoice::Auto).unwrap();
//! println!("{report}");
//! ```

pub mod attribute;
pub mod base;
pub mod engine;
pub mod influence;
pub mod lora;
pub mod model;
#[cfg(any(test, feature = "test-utils"))]
pub mod planted;
pub mod plot;
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
}

/// Runs `pass` (work on the model's tensors), turning a panic inside it into an error: tch's
/// infallible operations panic when libtorch throws (a CUDA out-of-memory, a shape its
/// kernels refuse), and a failed pass must fail only the requests in it, not the thread
/// that serves them. Tensors the pass held are freed as it unwinds; a gradient mode the pass
/// set is not restored (callers set it for each pass: the engine's step and the influence
/// passes do), and the panic is still printed to standard error by the panic hook.
pub fn guarded<T>(pass: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(pass)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(Error::Internal(format!("the pass stopped: {message}")))
    })
}

/// A keccak256 digest: content ids of checkpoints and adapter weights (the chain's `bytes32`;
/// `tributary-models` turns them into alloy's `B256`).
pub type Hash = [u8; 32];

/// keccak256 of `bytes`, as the chain computes it.
pub fn keccak256(bytes: impl AsRef<[u8]>) -> Hash {
    use tiny_keccak::Hasher;
    let mut k = tiny_keccak::Keccak::v256();
    k.update(bytes.as_ref());
    let mut out = [0u8; 32];
    k.finalize(&mut out);
    out
}

/// `0x`-prefixed lowercase hex of a digest, as the chain's tools print a `bytes32`.
pub fn hex(h: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(66);
    s.push_str("0x");
    for b in h {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
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

#[cfg(test)]
mod tests {
    #[test]
    fn keccak256_is_the_chains() {
        // Ethereum's keccak256 of the empty string and of "abc".
        use super::{hex, keccak256};
        assert_eq!(
            hex(&keccak256(b"")),
            "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(
            hex(&keccak256(b"abc")),
            "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
        );
    }
}
