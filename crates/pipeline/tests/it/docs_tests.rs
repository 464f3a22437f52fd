//! The README's pictures: each is a file in the repository; the architecture is rendered from its
//! source in `docs/` by `scripts/render-docs.sh` (graphviz), and the committed rendering is the one
//! its source gives (the dashboard's, `scripts/render-dashboard.py`, comes from a real run).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The images the README shows: `![alt](path)`.
fn readme_images() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    readme
        .split("![")
        .skip(1)
        .filter_map(|rest| {
            let (_, after) = rest.split_once("](")?;
            Some(after.split(')').next()?.to_string())
        })
        .collect()
}

#[test]
fn every_readme_picture_is_in_the_repo_and_rendered_from_its_source() {
    let images = readme_images();
    for picture in ["docs/architecture.svg", "docs/dashboard.png"] {
        assert!(
            images.contains(&picture.to_string()),
            "{picture} in {images:?}"
        );
    }
    for image in &images {
        assert!(
            repo().join(image).is_file(),
            "README shows {image}, not in the repository"
        );
    }
    // graphviz renders the same source the same way: the committed picture is the source's.
    let installed = Command::new("dot").arg("-V").output().is_ok();
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "graphviz is not installed (apt-get install graphviz)"
        );
        eprintln!("SKIPPED: graphviz is not installed, the rendering was not compared");
        return;
    }
    let rendered = Command::new("dot")
        .arg("-Tsvg")
        .arg(repo().join("docs/architecture.dot"))
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{rendered:?}");
    let committed = std::fs::read(repo().join("docs/architecture.svg")).unwrap();
    assert!(
        rendered.stdout == committed,
        "docs/architecture.svg is not docs/architecture.dot's rendering: run scripts/render-docs.sh"
    );
}
