//! The pause image: what every pod's sandbox container runs to hold the pod's
//! network namespace. No image can be pulled offline, so by default the driver
//! makes one itself: a root filesystem holding only a static busybox
//! (Debian's `busybox-static`, `/bin/busybox`), imported into the engine as
//! [`DEFAULT_PAUSE_IMAGE`] whose command is `busybox sleep` for ~68 years.

/// The image the driver builds when absent.
pub const DEFAULT_PAUSE_IMAGE: &str = "skiff/pause:busybox";
/// Where the static busybox it is built from is read.
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";
/// The pause container's command, as a `docker import --change` line.
pub const PAUSE_CMD: &str = r#"CMD ["/bin/busybox", "sleep", "2147483647"]"#;

/// One ustar header block for `path` (a directory when `size` is `None`).
fn header(path: &str, mode: u32, size: Option<usize>) -> [u8; 512] {
    let mut block = [0u8; 512];
    block[..path.len()].copy_from_slice(path.as_bytes());
    let octal = |block: &mut [u8; 512], at: usize, width: usize, value: u64| {
        let text = format!("{value:0w$o}\0", w = width - 1);
        block[at..at + width].copy_from_slice(text.as_bytes());
    };
    octal(&mut block, 100, 8, u64::from(mode));
    octal(&mut block, 108, 8, 0); // uid
    octal(&mut block, 116, 8, 0); // gid
    octal(&mut block, 124, 12, size.unwrap_or(0) as u64);
    octal(&mut block, 136, 12, 0); // mtime
    block[156] = if size.is_some() { b'0' } else { b'5' };
    block[257..263].copy_from_slice(b"ustar\0");
    block[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field read as spaces.
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(text.as_bytes());
    block
}

/// A tar archive of a root filesystem with `/bin/busybox` (mode 0755) and an empty `/tmp`.
pub fn rootfs_tar(busybox: &[u8]) -> Vec<u8> {
    let mut tar = Vec::with_capacity(busybox.len() + 4096);
    tar.extend_from_slice(&header("bin/", 0o755, None));
    tar.extend_from_slice(&header("tmp/", 0o1777, None));
    tar.extend_from_slice(&header("bin/busybox", 0o755, Some(busybox.len())));
    tar.extend_from_slice(busybox);
    let padding = (512 - busybox.len() % 512) % 512;
    tar.extend(std::iter::repeat_n(0u8, padding));
    tar.extend(std::iter::repeat_n(0u8, 1024));
    tar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_readable_by_tar() {
        let dir = std::env::temp_dir().join(format!("skiff-pause-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("rootfs.tar");
        std::fs::write(&archive, rootfs_tar(b"#!/bin/sh\necho hi\n")).unwrap();
        let listing = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&archive)
            .output()
            .expect("run tar");
        let text = String::from_utf8_lossy(&listing.stdout);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            listing.status.success(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
        assert!(text.contains("bin/busybox"), "{text}");
        assert!(text.contains("-rwxr-xr-x"), "{text}");
        assert!(text.contains("tmp/"), "{text}");
    }
}
