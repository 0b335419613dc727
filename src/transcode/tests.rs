//! Transcoding end to end, on descriptors compiled with protox: an inline
//! test service covering the rule forms and field types, plus the repo's
//! TCK and shopping-cart protos as real inputs.

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor, SerializeOptions};

use super::*;

const TEST_PROTO: &str = r#"
syntax = "proto3";
package t;
import "google/api/annotations.proto";
import "google/api/httpbody.proto";
import "google/protobuf/any.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

enum Color { RED = 0; GREEN = 1; }
message Inner { string id = 1; int64 n = 2; int32 q = 3; }
message Scalars {
  bool b = 1; int32 i32 = 2; int64 i64 = 3; uint32 u32 = 4; uint64 u64 = 5;
  float f = 6; double d = 7; string s = 8; bytes raw = 9; sint32 si = 10; fixed64 fx = 11;
  Color color = 12; Inner inner = 13; repeated int32 nums = 14; repeated string tags = 15;
  map<string, int32> counts = 16; optional int32 maybe = 17;
  oneof choice { string left = 18; int32 right = 19; }
  string user_id = 20;
}
message Wkt {
  google.protobuf.Timestamp at = 1; google.protobuf.Duration took = 2;
  google.protobuf.Int64Value big = 3; google.protobuf.StringValue name = 4;
  google.protobuf.Struct doc = 5; google.protobuf.Value value = 6; google.protobuf.ListValue list = 7;
  google.protobuf.FieldMask mask = 8; google.protobuf.Any payload = 9; google.protobuf.Empty nothing = 10;
  google.protobuf.BoolValue flag = 11;
}
message Reply {
  Inner inner = 1; repeated Inner items = 2; int32 count = 3; repeated float floats = 4;
  google.api.HttpBody page = 5; string note = 6; int64 big = 7; Color color = 8;
  map<string, Inner> by_id = 9; optional int32 maybe = 10;
}

service S {
  rpc Get(Scalars) returns (Scalars) {
    option (google.api.http) = { get: "/s/{s}/b/{b}/i/{i32}/l/{i64}/u/{u32}/ul/{u64}/f/{f}/d/{d}/r/{raw}/si/{si}/fx/{fx}" };
  }
  rpc Nested(Scalars) returns (Scalars) {
    option (google.api.http) = { post: "/n/{inner.id}" body: "*" additional_bindings { delete: "/n/{inner.id}" } };
  }
  rpc BodyField(Scalars) returns (Reply) {
    option (google.api.http) = { put: "/f/{s}" body: "inner" response_body: "items" };
  }
  rpc Files(Scalars) returns (Reply) {
    option (google.api.http) = { get: "/files/{s=**}" response_body: "count" };
  }
  rpc Touch(Scalars) returns (Reply) {
    option (google.api.http) = { patch: "/v/{s=x/*}:touch" body: "tags" response_body: "inner" };
  }
  rpc Page(Scalars) returns (Reply) { option (google.api.http) = { get: "/page" response_body: "page" }; }
  rpc Raw(google.api.HttpBody) returns (google.api.HttpBody) { option (google.api.http) = { post: "/raw" body: "*" }; }
  rpc Wkts(Wkt) returns (Wkt);
  rpc Anything(Scalars) returns (Scalars) {
    option (google.api.http) = { custom: { kind: "*" path: "/any" } };
  }
  rpc Stream(Scalars) returns (stream Reply) { option (google.api.http) = { get: "/stream" response_body: "floats" }; }
  rpc Upload(stream Scalars) returns (Reply);
}
"#;

const BAD_PROTO: &str = r#"
syntax = "proto3";
package bad;
import "google/api/annotations.proto";

enum Color { RED = 0; }
message Inner { string id = 1; }
message In { string s = 1; Inner inner = 2; Color color = 3; repeated string tags = 4; int32 n = 5; }
message Out { string s = 1; }

service B {
  rpc Ok(In) returns (Out) { option (google.api.http) = { get: "/ok/{s}" }; }
  rpc Parse(In) returns (Out) { option (google.api.http) = { get: "/a//b" }; }
  rpc MessageVar(In) returns (Out) { option (google.api.http) = { get: "/m/{inner}" }; }
  rpc EnumVar(In) returns (Out) { option (google.api.http) = { get: "/e/{color}" }; }
  rpc RepeatedVar(In) returns (Out) { option (google.api.http) = { get: "/r/{tags}" }; }
  rpc UnknownVar(In) returns (Out) { option (google.api.http) = { get: "/u/{nope}" }; }
  rpc ScalarPath(In) returns (Out) { option (google.api.http) = { get: "/sp/{s.x}" }; }
  rpc Twice(In) returns (Out) { option (google.api.http) = { get: "/t/{s}/{s}" }; }
  rpc UnknownBody(In) returns (Out) { option (google.api.http) = { post: "/b" body: "nope" }; }
  rpc UnknownResponse(In) returns (Out) { option (google.api.http) = { post: "/rb" body: "*" response_body: "nope" }; }
  rpc Ambiguous(In) returns (Out) { option (google.api.http) = { get: "/ok/*" additional_bindings { post: "/ok/{n}" } }; }
  rpc Custom(In) returns (Out) { option (google.api.http) = { custom: { kind: "HEAD" path: "/h" } }; }
  rpc Deep(In) returns (Out) {
    option (google.api.http) = { get: "/d1" additional_bindings { get: "/d2" additional_bindings { get: "/d3" } } };
  }
  rpc NoPattern(In) returns (Out) { option (google.api.http) = { body: "*" }; }
  rpc ClientStreaming(stream In) returns (Out) { option (google.api.http) = { post: "/cs" body: "*" }; }
}
"#;

/// Resolves `t.proto` from memory and everything else from `proto/` and
/// protox's bundled well-known types.
struct Inline(&'static str);

impl protox::file::FileResolver for Inline {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        if name == "t.proto" {
            protox::file::File::from_source(name, self.0)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// The pool as discovery builds it: decoded from an encoded set.
fn pool(source: &'static str) -> DescriptorPool {
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(Inline(source));
    resolver.add(protox::file::IncludeFileResolver::new(concat!(env!("CARGO_MANIFEST_DIR"), "/proto").into()));
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true).open_file("t.proto").unwrap();
    DescriptorPool::decode(compiler.encode_file_descriptor_set().as_slice()).unwrap()
}

fn methods(pool: &DescriptorPool) -> Vec<MethodDescriptor> {
    pool.services().flat_map(|s| s.methods().collect::<Vec<_>>()).collect()
}

/// Compiled routes plus the methods by route id.
struct Fixture {
    routes: Routes,
    problems: Vec<String>,
    methods: Vec<MethodDescriptor>,
}

impl Fixture {
    fn new(pool: &DescriptorPool) -> Fixture {
        let methods = methods(pool);
        let (routes, problems) = Routes::compile(methods.iter().cloned().enumerate());
        Fixture { routes, problems, methods }
    }

    fn test() -> Fixture {
        let f = Fixture::new(&pool(TEST_PROTO));
        assert_eq!(f.problems, Vec::<String>::new());
        f
    }

    fn rule(&self, method: &str, path: &str) -> (&HttpRule, Bindings) {
        match self.routes.find(method, path) {
            Found::Route(rule, bindings) => (rule, bindings),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    /// The gRPC method a request reaches.
    fn target(&self, method: &str, path: &str) -> String {
        let (rule, _) = self.rule(method, path);
        self.methods[rule.route_id()].full_name().to_owned()
    }

    /// The request message, printed as compact protobuf JSON without
    /// defaults, or the 400 reason.
    fn request(&self, method: &str, target: &str, content_type: Option<&str>, body: &str) -> Result<String, String> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let (rule, bindings) = self.rule(method, path);
        let bytes = rule.request(&bindings, query, content_type, body.as_bytes()).map_err(|e| e.to_string())?;
        Ok(print(&DynamicMessage::decode(rule.input.clone(), bytes.as_slice()).unwrap()))
    }

    /// A reply given as JSON, rendered by the rule of `method path`.
    fn response(&self, method: &str, path: &str, reply_json: &str) -> Rendered {
        let (rule, _) = self.rule(method, path);
        let reply = parse(&rule.output, reply_json).encode_to_vec();
        rule.response(&reply).unwrap()
    }
}

fn print(message: &DynamicMessage) -> String {
    let mut out = Vec::new();
    message.serialize_with_options(&mut serde_json::Serializer::new(&mut out), &SerializeOptions::new()).unwrap();
    String::from_utf8(out).unwrap()
}

fn parse(desc: &MessageDescriptor, json: &str) -> DynamicMessage {
    DynamicMessage::deserialize(desc.clone(), &mut serde_json::Deserializer::from_str(json)).unwrap()
}

fn json_body(rendered: Rendered) -> String {
    assert_eq!(rendered.content_type, "application/json");
    String::from_utf8(rendered.body).unwrap()
}

const JSON: Option<&str> = Some("application/json");

// --- compiling and matching ---

#[test]
fn default_rule_is_post_service_method_with_the_whole_body() {
    let f = Fixture::test();
    assert_eq!(f.target("POST", "/t.S/Wkts"), "t.S.Wkts");
    assert!(matches!(f.routes.find("GET", "/t.S/Wkts"), Found::MethodNotAllowed));
    assert!(matches!(f.routes.find("POST", "/t.S/Get"), Found::NotFound), "a declared rule replaces the default");
    assert!(matches!(f.routes.find("POST", "/t.S/Upload"), Found::NotFound), "client streaming is not served");
}

#[test]
fn additional_bindings_custom_any_and_verbs() {
    let f = Fixture::test();
    assert_eq!(f.target("POST", "/n/7"), "t.S.Nested");
    assert_eq!(f.target("DELETE", "/n/7"), "t.S.Nested");
    assert_eq!(f.target("OPTIONS", "/any"), "t.S.Anything");
    assert_eq!(f.target("PATCH", "/v/x/y:touch"), "t.S.Touch");
    assert!(matches!(f.routes.find("PATCH", "/v/x/y"), Found::NotFound));
    let (rule, _) = f.rule("GET", "/stream");
    assert!(rule.server_streaming());
    assert!(!f.rule("GET", "/page").0.server_streaming());
    assert_eq!(f.rule("PUT", "/f/a").0.to_string(), "PUT /f/{s}");
}

#[test]
fn bindings_are_raw_captures() {
    let f = Fixture::test();
    assert_eq!(f.rule("GET", "/files/a/b%2Fc/d").1, Bindings(vec!["a/b%2Fc/d".to_owned()]));
    assert_eq!(f.rule("GET", "/files").1, Bindings(vec![String::new()]));
    assert_eq!(f.rule("PATCH", "/v/x/y:touch").1, Bindings(vec!["x/y".to_owned()]));
}

#[test]
fn unservable_rules_are_reported_and_skipped() {
    let f = Fixture::new(&pool(BAD_PROTO));
    let expect = [
        "Service [bad.B] method [Parse]: HTTP rule [GET /a//b]: expected a literal segment at offset 3",
        "method [MessageVar]: HTTP rule [GET /m/{inner}]: path variable [inner]: message path parameters are not supported; it is ignored",
        "method [EnumVar]: HTTP rule [GET /e/{color}]: path variable [color]: enum path parameters are not supported",
        "method [RepeatedVar]: HTTP rule [GET /r/{tags}]: path variable [tags]: field [bad.In.tags] is repeated",
        "method [UnknownVar]: HTTP rule [GET /u/{nope}]: path variable [nope]: [bad.In] has no field [nope]",
        "method [ScalarPath]: HTTP rule [GET /sp/{s.x}]: path variable [s.x]: field [bad.In.s] is not a message",
        "method [Twice]: HTTP rule [GET /t/{s}/{s}]: path variable [s] is bound twice",
        "method [UnknownBody]: HTTP rule [POST /b]: body [nope]: [bad.In] has no such field",
        "method [UnknownResponse]: HTTP rule [POST /rb]: response_body [nope]: [bad.Out] has no such field",
        "method [Ambiguous]: HTTP rule [GET /ok/*] is ambiguous with [GET /ok/{s}] of an earlier method or binding; it is ignored",
        "method [Custom]: HTTP rule: custom pattern kind [HEAD] is not supported (only `*`); binding [/h] ignored",
        "method [Deep]: HTTP rule: additional_bindings nest only one level deep; the inner ones are ignored",
        "method [NoPattern]: HTTP rule: a binding names no pattern",
        "method [ClientStreaming]: client-streaming methods cannot be served over HTTP/JSON",
    ];
    for want in expect {
        assert!(f.problems.iter().any(|p| p.contains(want)), "missing {want:?} in {:#?}", f.problems);
    }
    assert_eq!(f.problems.len(), expect.len(), "{:#?}", f.problems);
    assert_eq!(f.target("GET", "/ok/x"), "bad.B.Ok");
    assert_eq!(f.target("POST", "/ok/3"), "bad.B.Ambiguous", "the binding that is not ambiguous is served");
    assert_eq!(f.target("GET", "/d2"), "bad.B.Deep");
    assert!(matches!(f.routes.find("GET", "/d3"), Found::NotFound));
}

#[test]
fn tck_rules() {
    let pool = DescriptorPool::decode(crate::proto::TCK_DESCRIPTORS).unwrap();
    let f = Fixture::new(&pool);
    assert_eq!(f.problems, Vec::<String>::new());
    assert_eq!(f.target("POST", "/tck/model/action/unary"), "cloudstate.tck.model.action.ActionTckModel.ProcessUnary");
    assert_eq!(f.target("POST", "/cloudstate.tck.model.valueentity.ValueEntityTwo/Call"), "cloudstate.tck.model.valueentity.ValueEntityTwo.Call");
    assert_eq!(f.target("POST", "/tck/model/eventsourced/e1"), "cloudstate.tck.model.EventSourcedTckModel.Process");
    assert_eq!(
        f.request("POST", "/tck/model/entity/path-id", JSON, r#"{"id":"body-id","actions":[{"update":{"value":"x"}}]}"#),
        Ok(r#"{"id":"path-id","actions":[{"update":{"value":"x"}}]}"#.to_owned()),
        "the entity key comes from the path"
    );
    let reply = crate::proto::cloudstate::tck::model::action::Response::default().encode_to_vec();
    let (rule, _) = f.rule("POST", "/tck/model/action/unary");
    assert_eq!(json_body(rule.response(&reply).unwrap()), r#"{"message":""}"#);
    assert_eq!(f.response("POST", "/tck/model/crdt/c1", r#"{"state":{"pncounter":{"value":-81}}}"#).body, br#"{"state":{"pncounter":{"value":"-81"}}}"#);
    assert_eq!(f.response("POST", "/tck/model/crdt/c1", r#"{"state":{"pncounter":{}}}"#).body, br#"{"state":{"pncounter":{"value":"0"}}}"#);
    assert_eq!(json_body(f.response("POST", "/cloudstate.tck.model.crdt.CrdtTwo/Call", "{}")), "{}");
}

#[test]
fn shopping_cart_rules() {
    let pool = DescriptorPool::decode(crate::proto::EXAMPLE_DESCRIPTORS).unwrap();
    let f = Fixture::new(&pool);
    assert_eq!(f.problems, Vec::<String>::new());
    assert_eq!(
        f.request("POST", "/cart/u1/items/add", JSON, r#"{"productId":"p","name":"Deluxe","quantity":7}"#),
        Ok(r#"{"userId":"u1","productId":"p","name":"Deluxe","quantity":7}"#.to_owned())
    );
    assert_eq!(f.request("POST", "/cart/u1/items/p2/remove", None, ""), Ok(r#"{"userId":"u1","productId":"p2"}"#.to_owned()));
    assert_eq!(f.request("GET", "/carts/u1", None, ""), Ok(r#"{"userId":"u1"}"#.to_owned()));
    let cart = r#"{"items":[{"productId":"A14362347","name":"Deluxe","quantity":7},{"productId":"B","name":"","quantity":0}]}"#;
    assert_eq!(
        json_body(f.response("GET", "/carts/u1/items", cart)),
        r#"[{"productId":"A14362347","name":"Deluxe","quantity":7.0},{"productId":"B","name":"","quantity":0.0}]"#,
        "the reference's google.protobuf.Value quirk"
    );
    assert_eq!(json_body(f.response("GET", "/carts/u1", cart)), cart);
    assert_eq!(json_body(f.response("GET", "/carts/u1", "{}")), r#"{"items":[]}"#);
    assert_eq!(json_body(f.response("POST", "/cart/u1/items/add", "{}")), "{}");
}

// --- requests ---

#[test]
fn path_variables_of_every_scalar_type() {
    let f = Fixture::test();
    let path = "/s/a%20b+c/b/true/i/-5/l/-9007199254740993/u/7/ul/18446744073709551615/f/1.5/d/-2.25e3/r/3q-_/si/-3/fx/9";
    assert_eq!(
        f.request("GET", path, None, ""),
        Ok(r#"{"b":true,"i32":-5,"i64":"-9007199254740993","u32":7,"u64":"18446744073709551615","f":1.5,"d":-2250.0,"s":"a b+c","raw":"3q+/","si":-3,"fx":"9"}"#.to_owned())
    );
    let path = "/s/x/b/false/i/0/l/0/u/0/ul/0/f/0/d/0/r/3q%2B%2F/si/0/fx/0";
    assert_eq!(f.request("GET", path, None, ""), Ok(r#"{"s":"x","raw":"3q+/"}"#.to_owned()), "standard base64, padding optional");
}

#[test]
fn path_variables_that_do_not_parse_are_400s() {
    let f = Fixture::test();
    let good = ["s", "v", "b", "true", "i", "1", "l", "1", "u", "1", "ul", "1", "f", "1", "d", "1", "r", "AA", "si", "1", "fx", "1"];
    let cases = [
        (3, "yes", "Path parameter [b]: [yes] is not a valid bool (true or false)"),
        (5, "1.5", "Path parameter [i32]: [1.5] is not a valid int32"),
        (5, "2147483648", "Path parameter [i32]: [2147483648] is not a valid int32"),
        (7, "x", "Path parameter [i64]: [x] is not a valid int64"),
        (9, "-1", "Path parameter [u32]: [-1] is not a valid uint32"),
        (13, "one", "Path parameter [f]: [one] is not a valid float"),
        (17, "!!", "Path parameter [raw]: [!!] is not valid base64"),
        (1, "%FF", "Path parameter [s]: [%FF] is not UTF-8 once percent-decoded"),
        (1, "%G0", "Path parameter [s]: [%G0] has an invalid percent-encoding"),
    ];
    for (index, value, want) in cases {
        let mut parts = good.map(str::to_owned);
        parts[index] = value.to_owned();
        let path = format!("/{}", parts.join("/"));
        assert_eq!(f.request("GET", &path, None, ""), Err(want.to_owned()), "{path}");
    }
}

#[test]
fn nested_path_variable_overrides_the_body() {
    let f = Fixture::test();
    assert_eq!(
        f.request("POST", "/n/p%2Fq", JSON, r#"{"inner":{"id":"b","n":"3"},"s":"x"}"#),
        Ok(r#"{"s":"x","inner":{"id":"p/q","n":"3"}}"#.to_owned())
    );
    assert_eq!(f.request("DELETE", "/n/k", None, ""), Ok(r#"{"inner":{"id":"k"}}"#.to_owned()), "no body rule: no content type needed");
}

#[test]
fn multi_segment_captures_keep_slashes_and_encoded_slashes() {
    let f = Fixture::test();
    assert_eq!(f.request("GET", "/files/a/b%2Fc/d%20e", None, ""), Ok(r#"{"s":"a/b%2Fc/d e"}"#.to_owned()));
}

#[test]
fn query_parameters() {
    let f = Fixture::test();
    let q = "/files/x?i32=4&nums=1&nums=2&inner.id=a+b&inner.n=5&tags=t%26u&color=GREEN&maybe=0&right=3&u64=1";
    assert_eq!(
        f.request("GET", q, None, ""),
        Ok(r#"{"i32":4,"u64":"1","s":"x","color":"GREEN","inner":{"id":"a b","n":"5"},"nums":[1,2],"tags":["t&u"],"maybe":0,"right":3}"#.to_owned())
    );
    assert_eq!(f.request("GET", "/files/x?rawBytes=1&s=y", None, "").unwrap_err(), "Query parameter [rawBytes] refers to a non-existent field");
    assert_eq!(f.request("GET", "/files/x?s=y&i32=1", None, ""), Ok(r#"{"i32":1,"s":"x"}"#.to_owned()), "the path wins");
    assert_eq!(f.request("GET", "/files/x?i32=1&i32=2", None, "").unwrap_err(), "Multiple values sent for non-repeated field by query parameter [i32]");
    assert_eq!(f.request("GET", "/files/x?inner=1", None, "").unwrap_err(), "Query parameter [inner] refers to a message type");
    assert_eq!(f.request("GET", "/files/x?s.x=1", None, "").unwrap_err(), "Query parameter [s.x]: [s] is not a singular message field");
    assert_eq!(f.request("GET", "/files/x?nums=a", None, "").unwrap_err(), "Query parameter [nums]: [a] is not a valid int32");
    assert_eq!(f.request("GET", "/files/x?color=BLUE", None, "").unwrap_err(), "Query parameter [color]: [BLUE] is not a value of enum [t.Color]");
    assert_eq!(f.request("GET", "/files/x?&&b", None, "").unwrap_err(), "Query parameter [b]: [] is not a valid bool (true or false)");
    assert_eq!(f.request("POST", "/n/k?s=ignored", JSON, "{}"), Ok(r#"{"inner":{"id":"k"}}"#.to_owned()), "body \"*\" takes no query");
}

#[test]
fn body_field_takes_the_rest_from_query_and_path() {
    let f = Fixture::test();
    assert_eq!(f.request("PUT", "/f/x?i32=2", JSON, r#"{"id":"i","n":9}"#), Ok(r#"{"i32":2,"s":"x","inner":{"id":"i","n":"9"}}"#.to_owned()));
    assert_eq!(f.request("PATCH", "/v/x/y:touch", JSON, r#"["a","b"]"#), Ok(r#"{"s":"x/y","tags":["a","b"]}"#.to_owned()));
    assert_eq!(
        f.request("PATCH", "/v/x/y:touch", JSON, r#"["a"],"s":"z""#).unwrap_err(),
        "Malformed JSON body: trailing characters at line 1 column 6"
    );
    assert!(f.request("PATCH", "/v/x/y:touch", JSON, r#"[1]"#).unwrap_err().starts_with("Malformed JSON body: invalid type"));
}

#[test]
fn json_bodies_accept_both_names_and_int64_as_string_or_number() {
    let f = Fixture::test();
    let want = Ok(r#"{"i64":"-12","u64":"12","inner":{"id":"k"},"tags":["t"],"counts":{"a":1}}"#.to_owned());
    assert_eq!(f.request("POST", "/n/k", JSON, r#"{"i64":"-12","u64":12,"tags":["t"],"counts":{"a":1}}"#), want);
    let f2 = f.request("POST", "/n/k", JSON, r#"{"i64":-12,"u64":"12","tags":["t"],"counts":{"a":1}}"#);
    assert_eq!(f2, want);
    assert_eq!(f.request("POST", "/n/k", JSON, r#"{"raw":"3q+/","si":1}"#), Ok(r#"{"raw":"3q+/","si":1,"inner":{"id":"k"}}"#.to_owned()));
    assert_eq!(
        f.request("POST", "/n/k", JSON, r#"{"inner":{"id":"x"}, "fx": "3"}"#),
        Ok(r#"{"fx":"3","inner":{"id":"k"}}"#.to_owned())
    );
    for body in [r#"{"user_id":"u"}"#, r#"{"userId":"u"}"#] {
        assert_eq!(f.request("POST", "/n/k", JSON, body), Ok(r#"{"inner":{"id":"k"},"userId":"u"}"#.to_owned()), "{body}");
    }
}

#[test]
fn bad_bodies_are_400s_with_the_reason() {
    let f = Fixture::test();
    let cases = [
        (JSON, r#"{"s":"x","bogus":1}"#, "Malformed JSON body: unrecognized field name 'bogus' at line 1 column 16"),
        (JSON, r#"{"s":"#, "Malformed JSON body: EOF while parsing a value at line 1 column 5"),
        (JSON, r#"{"i32":"x"}"#, "Malformed JSON body: invalid digit found in string at line 1 column 10"),
        (JSON, r#"{"b":1}"#, "Malformed JSON body: invalid type: integer `1`, expected a boolean at line 1 column 6"),
        (JSON, r#"{"s":"x"} x"#, "Malformed JSON body: trailing characters at line 1 column 11"),
        (JSON, "", "Malformed JSON body: EOF while parsing a value at line 1 column 0"),
        (None, "{}", "Content-Type application/json is required for a request with a body"),
        (Some("text/plain"), "{}", "Content-Type must be application/json, not [text/plain]"),
    ];
    for (content_type, body, want) in cases {
        assert_eq!(f.request("POST", "/n/k", content_type, body), Err(want.to_owned()), "{body}");
    }
    assert_eq!(f.request("POST", "/n/k", Some("application/json; charset=utf-8"), "{}"), Ok(r#"{"inner":{"id":"k"}}"#.to_owned()));
}

#[test]
fn a_body_on_get_is_refused() {
    let f = Fixture::test();
    assert_eq!(f.request("GET", "/files/x", JSON, "{}"), Err("A GET request must not have a body".to_owned()));
    assert_eq!(f.request("GET", "/files/x", None, ""), Ok(r#"{"s":"x"}"#.to_owned()));
}

#[test]
fn http_body_requests_take_any_content_type() {
    let f = Fixture::test();
    let (rule, bindings) = f.rule("POST", "/raw");
    let bytes = rule.request(&bindings, None, Some("image/png"), b"\x89PNG").unwrap();
    let body = crate::proto::google::api::HttpBody::decode(bytes.as_slice()).unwrap();
    assert_eq!((body.content_type.as_str(), body.data.as_ref()), ("image/png", b"\x89PNG".as_ref()));
}

// --- responses ---

#[test]
fn responses_print_defaults_int64_strings_and_enum_names() {
    let f = Fixture::test();
    let out = json_body(f.response("DELETE", "/n/k", r#"{"i64":"5","color":"GREEN","inner":{"id":"x"}}"#));
    assert_eq!(
        out,
        r#"{"b":false,"i32":0,"i64":"5","u32":0,"u64":"0","f":0.0,"d":0.0,"s":"","raw":"","si":0,"fx":"0","color":"GREEN","inner":{"id":"x","n":"0","q":0},"nums":[],"tags":[],"counts":{},"userId":""}"#,
        "unset messages, optional and oneof fields are omitted"
    );
}

#[test]
fn well_known_types_round_trip() {
    let f = Fixture::test();
    let json = r#"{"at":"2024-01-02T03:04:05.600Z","took":"1.500s","big":"-7","name":"n","doc":{"a":[1.0,"x",null,true]},"value":{"k":2.5},"list":[{},"y"],"mask":"a.b,cD","payload":{"@type":"type.googleapis.com/t.Inner","id":"i","n":"0","q":0},"nothing":{},"flag":false}"#;
    let request = f.request("POST", "/t.S/Wkts", JSON, json).unwrap();
    let (rule, _) = f.rule("POST", "/t.S/Wkts");
    let reply = parse(&rule.input, &request).encode_to_vec();
    assert_eq!(json_body(rule.response(&reply).unwrap()), json);
}

#[test]
fn any_with_an_unknown_type_is_a_render_error() {
    let f = Fixture::test();
    let (rule, _) = f.rule("POST", "/t.S/Wkts");
    let any = prost_types::Any { type_url: "type.googleapis.com/nope.Nope".to_owned(), value: vec![] }.encode_to_vec();
    // Field 9 (`payload`), length-delimited.
    let wkt = [&[0x4a, any.len() as u8][..], &any].concat();
    let err = rule.response(&wkt).unwrap_err();
    assert!(err.to_string().contains("nope.Nope"), "{err}");
    assert!(rule.response(b"\xff").is_err());
}

#[test]
fn response_body_fields() {
    let f = Fixture::test();
    let reply = r#"{"inner":{"id":"i","n":"8"},"items":[{"id":"a","q":2}],"count":7,"floats":[1.1,-0.5],"big":"9","color":"GREEN","byId":{"b":{"q":1},"a":{}}}"#;
    assert_eq!(json_body(f.response("PATCH", "/v/x/y:touch", reply)), r#"{"id":"i","n":"8","q":0}"#, "a message field prints as usual");
    assert_eq!(json_body(f.response("PATCH", "/v/x/y:touch", "{}")), r#"{"id":"","n":"0","q":0}"#, "an unset one as its default");
    assert_eq!(json_body(f.response("PUT", "/f/x", reply)), r#"[{"id":"a","n":"0","q":2.0}]"#);
    assert_eq!(json_body(f.response("GET", "/files/x", reply)), "7.0");
    assert_eq!(json_body(f.response("GET", "/files/x", "{}")), "0.0");
    assert_eq!(json_body(f.response("GET", "/stream", reply)), "[1.1,-0.5]");
}

#[test]
fn value_quirk_covers_every_kind() {
    use prost_reflect::Value;
    let pool = pool(TEST_PROTO);
    let reply = pool.get_message_by_name("t.Reply").unwrap();
    let render = |name: &str, value: Value| {
        let field = reply.get_field_by_name(name).unwrap();
        let mut out = Vec::new();
        response::through_value(&mut out, &value, &field.kind()).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert_eq!(render("big", Value::I64(-3)), r#""-3""#);
    assert_eq!(render("color", Value::EnumNumber(1)), r#""GREEN""#);
    assert_eq!(render("color", Value::EnumNumber(5)), "5.0");
    assert_eq!(render("note", Value::String("a\"b".into())), r#""a\"b""#);
    assert_eq!(render("floats", Value::List(vec![Value::F32(f32::NAN), Value::F32(f32::NEG_INFINITY), Value::F32(3e20)])), r#"["NaN","-Infinity",3e+20]"#);
    let by_id = inner_map(&pool);
    assert_eq!(render("by_id", by_id), r#"{"a":{"id":"","n":"0","q":0.0},"b":{"id":"x\"1","n":"-1","q":-12.0}}"#);
}

fn inner_map(pool: &DescriptorPool) -> prost_reflect::Value {
    let inner = pool.get_message_by_name("t.Inner").unwrap();
    let b = parse(&inner, r#"{"id":"x\"1","n":"-1","q":-12}"#);
    prost_reflect::Value::Map(
        [
            (prost_reflect::MapKey::String("b".into()), prost_reflect::Value::Message(b)),
            (prost_reflect::MapKey::String("a".into()), prost_reflect::Value::Message(DynamicMessage::new(inner))),
        ]
        .into_iter()
        .collect(),
    )
}

#[test]
fn http_body_replies_are_raw() {
    let f = Fixture::test();
    let (rule, _) = f.rule("POST", "/raw");
    let body = crate::proto::google::api::HttpBody { content_type: "text/html".into(), data: "<p>".into(), extensions: vec![] };
    assert_eq!(rule.response(&body.encode_to_vec()).unwrap(), Rendered { content_type: "text/html".into(), body: b"<p>".to_vec() });
    let page = f.response("GET", "/page", r#"{"page":{"contentType":"text/csv","data":"YSxi"}}"#);
    assert_eq!(page, Rendered { content_type: "text/csv".into(), body: b"a,b".to_vec() });
    let empty = f.response("GET", "/page", "{}");
    assert_eq!(empty, Rendered { content_type: "application/octet-stream".into(), body: vec![] });
}
