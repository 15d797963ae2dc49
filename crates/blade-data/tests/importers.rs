//! Importers on small files written by the tests themselves: exact values, line numbers of
//! malformed rows, `skip_bad_rows`, `.gz` input and latin-1 titles.

use std::io::Write;
use std::path::{Path, PathBuf};

use blade_data::importers::{
    import, read_amazon2018, read_csv, read_goodreads, read_ml100k, read_ml1m_dir,
    read_recbole_dir, read_steam, Format, ImportOptions,
};
use blade_data::{DataError, RawInteraction, RawItem};

const STRICT: ImportOptions = ImportOptions {
    skip_bad_rows: false,
};
const SKIP: ImportOptions = ImportOptions {
    skip_bad_rows: true,
};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

fn write_gz(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).expect("create test file");
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip");
    path
}

fn ia(user: &str, item: &str, timestamp: i64, rating: Option<f32>) -> RawInteraction {
    RawInteraction {
        user: user.into(),
        item: item.into(),
        timestamp,
        rating,
    }
}

fn it(title: &str, genres: &[&str]) -> RawItem {
    RawItem {
        title: title.into(),
        genres: genres.iter().map(|g| g.to_string()).collect(),
    }
}

/// Asserts a `BadRow` in the file named `file` at `line`, whose message mentions `what`.
fn assert_bad_row(err: DataError, file: &str, line: usize, what: &str) {
    let text = err.to_string();
    match err {
        DataError::BadRow { path, line: l, .. } => {
            assert_eq!(
                path.file_name().and_then(|n| n.to_str()),
                Some(file),
                "{text}"
            );
            assert_eq!(l, line, "{text}");
            assert!(text.contains(&format!("{file}:{line}:")), "{text}");
            assert!(text.contains(what), "{text}");
        }
        other => panic!("expected a BadRow, got {other:?}"),
    }
}

#[test]
fn recbole_atomic_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "toy.inter",
        b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n\
          1\t10\t4\t881250949\n2\t11\t3.5\t881250950.7\n\n1\t11\t\t881250951\n",
    );
    write(
        d,
        "toy.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
         10\tToy Story\t1995\tAnimation Children's Comedy\n11\tMisérables, Les\t1995\tDrama\n\
         12\tUnused\t1990\tWar\n"
            .as_bytes(),
    );
    write(d, "toy.user", b"user_id:token\tage:token\n1\t24\n2\t53\n");
    let ds = read_recbole_dir(d, "toy", &STRICT).unwrap();
    assert_eq!(ds.name, "toy");
    assert_eq!(
        ds.interactions,
        vec![
            ia("1", "10", 881250949, Some(4.0)),
            ia("2", "11", 881250950, Some(3.5)),
            ia("1", "11", 881250951, None),
        ]
    );
    assert_eq!(ds.items.len(), 2, "only items that occur are kept");
    assert_eq!(
        ds.items["10"],
        it("Toy Story", &["Animation", "Children's", "Comedy"])
    );
    assert_eq!(ds.items["11"], it("Misérables, Les", &["Drama"]));
    assert_eq!(ds.skipped_rows, 0);
    // The dispatcher finds the files from the directory (single `.inter`) or the file.
    assert_eq!(import(Format::RecBole, d, &STRICT).unwrap(), ds);
    assert_eq!(
        import(Format::RecBole, &d.join("toy.inter"), &STRICT).unwrap(),
        ds
    );
}

#[test]
fn recbole_errors_skips_and_gz() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let body =
        b"user_id:token\titem_id:token\ttimestamp:float\n1\t10\t5\n2\t11\tsoon\n3\n4\t12\t7\n";
    write(d, "bad.inter", body);
    let err = read_recbole_dir(d, "bad", &STRICT).unwrap_err();
    assert_bad_row(err, "bad.inter", 3, "Unix timestamp");
    let ds = read_recbole_dir(d, "bad", &SKIP).unwrap();
    assert_eq!(ds.skipped_rows, 2);
    assert_eq!(
        ds.interactions,
        vec![ia("1", "10", 5, None), ia("4", "12", 7, None)]
    );

    write(
        d,
        "nouser.inter",
        b"item_id:token\ttimestamp:float\n10\t5\n",
    );
    let err = read_recbole_dir(d, "nouser", &STRICT).unwrap_err();
    assert!(matches!(err, DataError::BadFile { .. }), "{err}");
    assert!(err.to_string().contains("user_id"), "{err}");

    // Without a timestamp column, the row index keeps file order.
    write_gz(
        d,
        "gz.inter.gz",
        b"user_id:token\titem_id:token\n1\t10\n1\t11\n",
    );
    let ds = read_recbole_dir(d, "gz", &STRICT).unwrap();
    assert_eq!(
        ds.interactions,
        vec![ia("1", "10", 0, None), ia("1", "11", 1, None)]
    );
}

fn u_item_row(id: &str, title: &[u8], flags: &[usize]) -> Vec<u8> {
    let mut row = id.as_bytes().to_vec();
    row.push(b'|');
    row.extend_from_slice(title);
    row.extend_from_slice(b"|01-Jan-1995||http://us.imdb.com/x");
    for g in 0..19 {
        row.extend_from_slice(if flags.contains(&g) { b"|1" } else { b"|0" });
    }
    row.push(b'\n');
    row
}

#[test]
fn movielens_100k_latin1_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "u.data",
        b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n",
    );
    let mut item = u_item_row("242", b"Kolya (1996)", &[5]);
    item.extend(u_item_row("302", b"Mis\xe9rables, Les (1995)", &[8, 12]));
    item.extend(u_item_row("999", b"Unused (1990)", &[0]));
    write(d, "u.item", &item);
    let ds = import(Format::MovieLens100k, d, &STRICT).unwrap();
    assert_eq!(ds.name, "ml-100k");
    assert_eq!(
        ds.interactions,
        vec![
            ia("196", "242", 881250949, Some(3.0)),
            ia("186", "302", 891717742, Some(3.0))
        ]
    );
    assert_eq!(ds.items.len(), 2);
    assert_eq!(ds.items["242"], it("Kolya (1996)", &["Comedy"]));
    assert_eq!(
        ds.items["302"],
        it("Misérables, Les (1995)", &["Drama", "Musical"])
    );

    let bad = write(d, "bad.data", b"1\t2\t3\t4\n1\t2\t3\n1\tx\tgood\t5\n");
    let err = read_ml100k(&bad, None, &STRICT).unwrap_err();
    assert_bad_row(err, "bad.data", 2, "expected 4 tab-separated fields");
    let ds = read_ml100k(&bad, None, &SKIP).unwrap();
    assert_eq!((ds.interactions.len(), ds.skipped_rows), (1, 2));

    let mut bad_item = u_item_row("2", b"Ok", &[]);
    bad_item.extend_from_slice(b"3|Short|x\n");
    let bad_item = write(d, "bad.item", &bad_item);
    let err = read_ml100k(&d.join("u.data"), Some(&bad_item), &STRICT).unwrap_err();
    assert_bad_row(err, "bad.item", 2, "expected 24");

    // Compressed files are found by the directory reader too.
    let gz = d.join("gz");
    std::fs::create_dir(&gz).unwrap();
    write_gz(&gz, "u.data.gz", b"1\t2\t5\t100\n");
    let ds = import(Format::MovieLens100k, &gz, &STRICT).unwrap();
    assert_eq!(ds.interactions, vec![ia("1", "2", 100, Some(5.0))]);
}

#[test]
fn movielens_1m() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "ratings.dat",
        b"1::1193::5::978300760\n1::661::3::978302109\n",
    );
    write(
        d,
        "movies.dat",
        b"1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Caf\xe9 (1996)::Animation|Children's|Musical\n",
    );
    let ds = read_ml1m_dir(d, &STRICT).unwrap();
    assert_eq!(ds.name, "ml-1m");
    assert_eq!(
        ds.interactions,
        vec![
            ia("1", "1193", 978300760, Some(5.0)),
            ia("1", "661", 978302109, Some(3.0))
        ]
    );
    assert_eq!(
        ds.items["1193"],
        it("One Flew Over the Cuckoo's Nest (1975)", &["Drama"])
    );
    assert_eq!(
        ds.items["661"],
        it("Café (1996)", &["Animation", "Children's", "Musical"])
    );
    assert_eq!(import(Format::MovieLens1m, d, &STRICT).unwrap(), ds);

    write(d, "ratings.dat", b"1::1193::5::978300760\n1::661::3\n");
    let err = read_ml1m_dir(d, &STRICT).unwrap_err();
    assert_bad_row(err, "ratings.dat", 2, "UserID::MovieID::Rating::Timestamp");
}

#[test]
fn amazon_2018_reviews_and_meta() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reviews = concat!(
        r#"{"overall": 5.0, "verified": true, "reviewerID": "A1", "asin": "B01", "unixReviewTime": 1252800000, "style": {"Format:": " Audio CD"}}"#,
        "\n",
        r#"{"overall": 2.0, "reviewerID": "A2", "asin": "B02", "reviewText": "meh", "unixReviewTime": 1252900000}"#,
        "\n"
    );
    write_gz(d, "CDs_and_Vinyl_5.json.gz", reviews.as_bytes());
    let meta = concat!(
        r#"{"asin": "B01", "title": "Rock &amp; Roll", "category": ["CDs & Vinyl", "Pop", "Dance Pop"]}"#,
        "\n",
        r#"{"asin": "B02", "title": "Only root", "category": ["CDs & Vinyl"]}"#,
        "\n",
        r#"{"title": "no asin"}"#,
        "\n",
        r#"{"asin": "B03", "title": "Not reviewed", "category": []}"#,
        "\n"
    );
    write(d, "meta_CDs_and_Vinyl.json", meta.as_bytes());
    let ds = import(Format::Amazon2018, d, &STRICT).unwrap();
    assert_eq!(ds.name, "amazon-cds-and-vinyl");
    assert_eq!(
        ds.interactions,
        vec![
            ia("A1", "B01", 1252800000, Some(5.0)),
            ia("A2", "B02", 1252900000, Some(2.0))
        ]
    );
    assert_eq!(ds.items.len(), 2);
    assert_eq!(
        ds.items["B01"],
        it("Rock &amp; Roll", &["Pop", "Dance Pop"])
    );
    assert_eq!(ds.items["B02"], it("Only root", &[]));
    let by_file = d.join("CDs_and_Vinyl_5.json.gz");
    assert_eq!(import(Format::Amazon2018, &by_file, &STRICT).unwrap(), ds);

    let bad = write(
        d,
        "Bad.json",
        b"{\"overall\": 1.0, \"reviewerID\": \"A\", \"asin\": \"B\", \"unixReviewTime\": 1}\n{\"overall\": 1.0, \"asin\": \"B\"}\nnot json\n",
    );
    let err = read_amazon2018(&bad, None, &STRICT).unwrap_err();
    assert_bad_row(err, "Bad.json", 2, "reviewerID");
    let ds = read_amazon2018(&bad, None, &SKIP).unwrap();
    assert_eq!((ds.interactions.len(), ds.skipped_rows), (1, 2));
}

#[test]
fn steam_python_literal_reviews_and_games() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reviews = concat!(
        r#"{'username': 'Chaos Syren', 'hours': 0.1, 'products': 41, 'product_id': '725280', 'page_order': 0, 'date': '2017-12-17', 'text': 'it\'s "fine"', 'early_access': False, 'page': 1}"#,
        "\n",
        r#"{'user_id': '76561198', 'product_id': '440', 'date': '2014-05-01', 'text': "don't \u00e9", 'found_funny': None, 'compensation': 'Product received for free'}"#,
        "\n",
    );
    write(d, "steam_reviews.json", reviews.as_bytes());
    let games = concat!(
        r#"{'publisher': 'Kotoshiro', 'genres': ['Action', 'Indie'], 'app_name': 'Lost Summoner Kitty', 'id': '725280', 'price': 4.99, 'early_access': False}"#,
        "\n",
        r#"{'app_name': 'Team Fortress 2', 'tags': ['Free to Play', 'FPS'], 'id': '440', 'metascore': 92}"#,
        "\n",
        r#"{'app_name': 'No id at all', 'genres': ['Action']}"#,
        "\n",
    );
    write_gz(d, "steam_games.json.gz", games.as_bytes());
    let ds = import(Format::Steam, d, &STRICT).unwrap();
    assert_eq!(ds.name, "steam");
    assert_eq!(
        ds.interactions,
        vec![
            ia("Chaos Syren", "725280", 1513468800, None),
            ia("76561198", "440", 1398902400, None)
        ]
    );
    assert_eq!(ds.items.len(), 2);
    assert_eq!(
        ds.items["725280"],
        it("Lost Summoner Kitty", &["Action", "Indie"])
    );
    assert_eq!(
        ds.items["440"],
        it("Team Fortress 2", &["Free to Play", "FPS"])
    );

    let bad = write(
        d,
        "bad_reviews.json",
        b"{'username': 'a', 'product_id': '1', 'date': '2017-01-02'}\n{'username': 'b', 'product_id': '2', 'date': '2017-02-30'}\n{'username': 'c', 'product_id\n",
    );
    let err = read_steam(&bad, None, &STRICT).unwrap_err();
    assert_bad_row(err, "bad_reviews.json", 2, "YYYY-MM-DD");
    let ds = read_steam(&bad, None, &SKIP).unwrap();
    assert_eq!((ds.interactions.len(), ds.skipped_rows), (1, 2));
}

#[test]
fn steam_australian_reviews() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let line = concat!(
        r#"{'user_id': 'u1', 'user_url': 'http://steamcommunity.com/id/u1', 'reviews': [{'funny': '', 'posted': 'Posted November 5, 2011.', 'last_edited': '', 'item_id': '1250', 'helpful': 'No ratings yet', 'recommend': True, 'review': 'Simple yet with great replayability.'}, {'posted': 'Posted March 3.', 'item_id': '22200', 'recommend': True, 'review': 'no year'}]}"#,
        "\n"
    );
    let path = write_gz(d, "australian_user_reviews.json.gz", line.as_bytes());
    let err = read_steam(&path, None, &STRICT).unwrap_err();
    assert_bad_row(err, "australian_user_reviews.json.gz", 1, "Posted March 3.");
    let ds = import(Format::Steam, d, &SKIP).unwrap();
    assert_eq!(ds.interactions, vec![ia("u1", "1250", 1320451200, None)]);
    assert_eq!(ds.skipped_rows, 1);
}

#[test]
fn goodreads_interactions_and_books() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let interactions = concat!(
        r#"{"user_id": "8842", "book_id": "24375664", "review_id": "r1", "is_read": true, "rating": 5, "date_added": "Fri Aug 25 13:55:02 -0700 2017", "date_updated": "Mon Oct 09 08:55:59 -0700 2017"}"#,
        "\n",
        r#"{"user_id": "8842", "book_id": "18245960", "is_read": false, "rating": 0, "date_added": "Mon Jan 02 10:00:00 +0530 2012", "date_updated": ""}"#,
        "\n",
        r#"{"user_id": "72fb", "book_id": "24375664", "is_read": true, "rating": 3, "date_added": "", "date_updated": "Tue Feb 28 23:30:00 -0800 2012"}"#,
        "\n",
    );
    write_gz(
        d,
        "goodreads_interactions_poetry.json.gz",
        interactions.as_bytes(),
    );
    let books = concat!(
        r#"{"book_id": "24375664", "title": "Poems", "popular_shelves": [{"count": "3", "name": "to-read"}, {"count": "9", "name": "poetry"}, {"count": "2", "name": "favorites"}, {"count": "2", "name": "classics"}, {"count": "4", "name": "currently-reading"}, {"count": "2", "name": "owned"}, {"count": "5", "name": "verse"}, {"count": "1", "name": "kindle"}, {"count": "2", "name": "library"}]}"#,
        "\n",
        r#"{"book_id": "18245960", "title": "", "title_without_series": "Untitled", "popular_shelves": []}"#,
        "\n",
    );
    write(d, "goodreads_books_poetry.json", books.as_bytes());
    let ds = import(Format::Goodreads, d, &STRICT).unwrap();
    assert_eq!(ds.name, "goodreads-poetry");
    assert_eq!(
        ds.interactions,
        vec![
            ia("8842", "24375664", 1503694502, Some(5.0)),
            ia("8842", "18245960", 1325478600, None),
            ia("72fb", "24375664", 1330500600, Some(3.0)),
        ]
    );
    // Top 5 by count, status shelves left out, ties in file order.
    let poems = it(
        "Poems",
        &["poetry", "verse", "classics", "owned", "library"],
    );
    assert_eq!(ds.items["24375664"], poems);
    assert_eq!(ds.items["18245960"], it("Untitled", &[]));

    let file = d.join("goodreads_interactions_poetry.json.gz");
    let read_only = read_goodreads(&file, None, true, &STRICT).unwrap();
    assert_eq!(read_only.interactions.len(), 2);
    assert_eq!(read_only.skipped_rows, 0);

    let bad = write(
        d,
        "goodreads_interactions_bad.json",
        b"{\"user_id\": \"u\", \"book_id\": \"b\", \"date_added\": \"Fri Aug 25 13:55:02 -0700 2017\"}\n{\"user_id\": \"u\", \"book_id\": \"b\", \"date_added\": \"2017-08-25\"}\n",
    );
    let err = read_goodreads(&bad, None, false, &STRICT).unwrap_err();
    assert_bad_row(
        err,
        "goodreads_interactions_bad.json",
        2,
        "Fri Aug 25 13:55:02 -0700 2017",
    );
    let ds = read_goodreads(&bad, None, false, &SKIP).unwrap();
    assert_eq!(
        (ds.name.as_str(), ds.interactions.len(), ds.skipped_rows),
        ("goodreads-bad", 1, 1)
    );
}

#[test]
fn generic_csv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "interactions.csv",
        b"User_ID,Item,TIMESTAMP,Rating\nu1,i1,100,4.5\nu2,\"i,2\",2020-02-29,\n\nu1,i3,1.9e2,1\n",
    );
    write(
        d,
        "items.csv",
        b"item,title,genres\ni1,First,Drama|Comedy\n\"i,2\",\"Second, the\",\ni9,Unused,War\n",
    );
    let ds = import(Format::Csv, d, &STRICT).unwrap();
    assert_eq!(ds.name, d.file_name().unwrap().to_str().unwrap());
    assert_eq!(
        ds.interactions,
        vec![
            ia("u1", "i1", 100, Some(4.5)),
            ia("u2", "i,2", 1582934400, None),
            ia("u1", "i3", 190, Some(1.0)),
        ]
    );
    assert_eq!(ds.items.len(), 2);
    assert_eq!(ds.items["i1"], it("First", &["Drama", "Comedy"]));
    assert_eq!(ds.items["i,2"], it("Second, the", &[]));

    let bad = write(d, "log.csv", b"user,item,timestamp\na,b,1\na,b,later\na\n");
    let err = read_csv(&bad, None, &STRICT).unwrap_err();
    assert_bad_row(err, "log.csv", 3, "Unix timestamp");
    let ds = read_csv(&bad, None, &SKIP).unwrap();
    assert_eq!(
        (ds.name.as_str(), ds.interactions.len(), ds.skipped_rows),
        ("log", 1, 2)
    );

    let err = read_csv(&write(d, "nohead.csv", b"u,i,t\n1,2,3\n"), None, &STRICT).unwrap_err();
    assert!(
        matches!(err, DataError::BadFile { .. }) && err.to_string().contains("`user`/`user_id`")
    );

    let gz = write_gz(d, "log.tsv.gz", b"user\titem\ttimestamp\na\tb\t7\n");
    let ds = import(Format::Csv, &gz, &STRICT).unwrap();
    assert_eq!(ds.interactions, vec![ia("a", "b", 7, None)]);
    assert_eq!(ds.name, "log");
}

#[test]
fn format_names_round_trip() {
    for format in Format::ALL {
        assert_eq!(format.to_string().parse::<Format>().unwrap(), format);
    }
    assert_eq!("ML-100K".parse::<Format>().unwrap(), Format::MovieLens100k);
    assert_eq!("amazon".parse::<Format>().unwrap(), Format::Amazon2018);
    let err = "netflix".parse::<Format>().unwrap_err().to_string();
    assert!(
        err.contains("netflix") && err.contains("goodreads"),
        "{err}"
    );
}

#[test]
fn missing_files_are_reported_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = import(Format::MovieLens100k, dir.path(), &STRICT).unwrap_err();
    assert!(err.to_string().contains("u.data"), "{err}");
    let err = read_csv(&dir.path().join("absent.csv"), None, &STRICT).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("absent.csv"));
}

#[test]
fn an_unterminated_quote_is_named_as_such_and_io_causes_print_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.csv");
    std::fs::write(&path, "user,item,timestamp\nu1,i1,1\nu1,\"i2,2\nu2,i3,3\n").unwrap();
    let err = read_csv(&path, None, &STRICT).unwrap_err().to_string();
    assert!(
        err.contains("q.csv:3") && err.contains("unterminated quote"),
        "{err}"
    );
    // the I/O cause is in the message and not repeated as a source
    let err = read_csv(&dir.path().join("absent.csv"), None, &STRICT).unwrap_err();
    assert!(std::error::Error::source(&err).is_none());
}
