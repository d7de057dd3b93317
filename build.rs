//! Puts libtorch's directory on the rpath of this crate's binaries and tests, so they run
//! without LD_LIBRARY_PATH. torch-sys reports the directory (`links = "tch"`).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
