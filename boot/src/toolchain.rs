//! The Rust toolchain's own tools (the `llvm-tools` component), found once
//! per process.
//!
//! The workspace pins its toolchain (`rust-toolchain.toml`); `rustc` run in
//! the workspace resolves to it. Its sysroot holds the LLVM tools under
//! `lib/rustlib/<host triple>/bin`, and `rustc -vV` names the host triple,
//! so nothing here assumes which host we run on.

use std::{path::PathBuf, process::Command, sync::OnceLock};

struct Toolchain {
    sysroot: PathBuf,
    host: String,
}

fn rustc(args: &[&str]) -> Option<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .args(args)
        .current_dir(crate::workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn toolchain() -> Option<&'static Toolchain> {
    static TOOLCHAIN: OnceLock<Option<Toolchain>> = OnceLock::new();
    TOOLCHAIN
        .get_or_init(|| {
            let sysroot = PathBuf::from(rustc(&["--print", "sysroot"])?.trim());
            let host = rustc(&["-vV"])?
                .lines()
                .find_map(|l| l.strip_prefix("host: "))?
                .trim()
                .to_string();
            Some(Toolchain { sysroot, host })
        })
        .as_ref()
}

/// The path of the LLVM tool `name` (say `llvm-nm`) of the `llvm-tools`
/// component, or `None` if the component is not installed.
pub fn llvm_tool(name: &str) -> Option<PathBuf> {
    let t = toolchain()?;
    let path = t
        .sysroot
        .join("lib/rustlib")
        .join(&t.host)
        .join("bin")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    path.exists().then_some(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_pinned_llvm_tools() {
        // rust-toolchain.toml lists the llvm-tools component.
        let nm = super::llvm_tool("llvm-nm").expect("llvm-nm of the llvm-tools component");
        assert!(nm.ends_with("bin/llvm-nm"), "{}", nm.display());
        assert!(super::llvm_tool("llvm-objcopy").is_some());
        assert!(super::llvm_tool("no-such-tool").is_none());
    }
}
