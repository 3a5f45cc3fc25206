//! Property tests: arbitrary bytes and arbitrary JSON never panic the webhook parser or the
//! configuration parser; they give a value or a clean error. The strict request checks (the
//! `{"size": n}` body, the Content-Type, the query string) accept only what is documented.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use idch_autoscaler::config::Config;
use idch_autoscaler::http::webhooks::{check_content_type, parse, parse_desired, parse_query};
use proptest::prelude::*;

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::json!(f)),
        prop_oneof![
            Just("firing".to_string()),
            Just("resolved".to_string()),
            Just("pool".to_string()),
            ".{0,12}"
        ]
        .prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("status".to_string()),
            Just("version".to_string()),
            Just("alerts".to_string()),
            Just("labels".to_string()),
            Just("commonLabels".to_string()),
            Just("pool".to_string()),
            "[a-z]{1,6}"
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies near `{"size": n}`: the right key with any value, with extra keys, or anything.
fn desired_json() -> impl Strategy<Value = serde_json::Value> {
    let number = prop_oneof![
        any::<u32>().prop_map(|n| serde_json::json!(n)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        (-1e12f64..1e12).prop_map(|f| serde_json::json!(f)),
    ];
    prop_oneof![
        json(),
        number
            .clone()
            .prop_map(|n| serde_json::json!({ "size": n })),
        json().prop_map(|v| serde_json::json!({ "size": v })),
        (number.clone(), "[a-z]{1,5}", json()).prop_map(|(n, k, v)| {
            let mut m = serde_json::Map::new();
            m.insert("size".into(), n);
            m.insert(k, v);
            serde_json::Value::Object(m)
        }),
        number.prop_map(|n| serde_json::json!([n])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn desired_parser_accepts_only_the_documented_object(value in desired_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        match parse_desired(&body) {
            Ok(n) => {
                let object = value.as_object().expect("only an object is accepted");
                prop_assert_eq!(object.len(), 1, "only the key size: {}", value);
                prop_assert_eq!(object["size"].as_u64(), Some(u64::from(n)), "{}", value);
            }
            Err(e) => prop_assert!(e.contains("{\"size\": n}"), "{}", e),
        }
    }

    #[test]
    fn desired_parser_takes_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_desired(&body);
    }

    #[test]
    fn a_body_passes_only_as_json(content_type in "[ -~]{0,40}", body in "[ -~]{1,20}") {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_str(&content_type).unwrap());
        let blank = body.trim().is_empty();
        match check_content_type(&headers, body.as_bytes()) {
            Ok(()) => prop_assert!(
                blank || content_type.trim().to_ascii_lowercase().starts_with("application/json"),
                "{:?} passed", content_type
            ),
            Err(e) => {
                prop_assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
                prop_assert!(e.message.contains("application/json") || e.message.contains("UTF-8"), "{}", e.message);
            }
        }
    }

    #[test]
    fn an_encoded_body_is_refused(encoding in "[a-z0-9-]{1,12}") {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("content-encoding", HeaderValue::from_str(&encoding).unwrap());
        let r = check_content_type(&headers, b"{}");
        prop_assert_eq!(r.is_ok(), encoding == "identity", "{}", encoding);
    }

    #[test]
    fn query_strings_give_known_parameters_once(raw in "(pool|limit|x|%70ool|=|&|[a-z0-9%+]){0,12}") {
        match parse_query(Some(&raw), &["pool", "limit"]) {
            Ok(map) => {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&raw).unwrap();
                prop_assert_eq!(pairs.len(), map.len(), "each parameter once: {:?}", raw);
                prop_assert!(map.keys().all(|k| k == "pool" || k == "limit"), "{:?}", map);
            }
            Err(e) => {
                prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn webhook_parser_takes_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&body);
    }

    #[test]
    fn webhook_parser_takes_arbitrary_json(value in json()) {
        let body = serde_json::to_vec(&value).unwrap();
        match parse(&body) {
            Ok(r) => prop_assert!(value.is_object() || body.iter().all(|b| b.is_ascii_whitespace()), "{r:?}"),
            Err(e) => prop_assert!(!e.is_empty()),
        }
    }

    #[test]
    fn config_parser_takes_arbitrary_text(text in ".{0,400}") {
        if let Err(e) = Config::parse(&text) {
            prop_assert!(!e.key.is_empty() && !e.reason.is_empty());
        }
    }

    #[test]
    fn config_parser_takes_mutated_good_files(cut in 0usize..600, insert in "[ -~]{0,8}") {
        let good = "[idcloudhost]\napi_url = \"http://127.0.0.1:1\"\n[[pool]]\nname = \"p\"\nseed_vm = \"s\"\nmin = 1\nmax = 3\nhealth = { path = \"/h\", interval = \"2s\" }\n";
        let cut = cut.min(good.len());
        let mut text = good[..cut].to_string();
        text.push_str(&insert);
        text.push_str(&good[cut..]);
        if let Err(e) = Config::parse(&text) {
            prop_assert!(!e.key.is_empty() && !e.reason.is_empty());
        }
    }
}
