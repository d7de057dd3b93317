//! libtorch through tch, linked from the project's venv.

mod attribution;
mod base;
mod gpu;
mod hf;
mod lora;
mod serve;
mod tokenizer;
mod train;

use tributary_trainer::{DeviceChoice, check};

#[test]
fn libtorch_computes_exactly_on_the_cpu() {
    let r = check(DeviceChoice::Cpu).unwrap();
    assert_eq!(r.device, "Cpu");
    assert_eq!(r.max_error, 0.0);
    assert!(r.threads >= 1);
}

/// Runs on CUDA where a GPU is visible; elsewhere checks the error and says it was skipped.
#[test]
fn cuda_smoke_or_a_clear_error() {
    if tch::Cuda::is_available() {
        let r = check(DeviceChoice::Cuda).unwrap();
        assert_eq!(r.max_error, 0.0);
        assert!(r.device.starts_with("Cuda"));
    } else {
        let err = check(DeviceChoice::Cuda).unwrap_err().to_string();
        assert!(
            err.contains("no CUDA device") && err.contains("--device cpu"),
            "{err}"
        );
        eprintln!("CUDA smoke test skipped: no GPU visible to libtorch on this machine");
    }
}
