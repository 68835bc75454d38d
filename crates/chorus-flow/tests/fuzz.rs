//! Random and mutated documents never panic: parse returns Ok or Err.

use chorus_flow::parse;

/// xorshift64*: deterministic, so a failing case can be replayed from its iteration number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    r#"<Response><Conference muted="true" maxMembers="5" enterSound="beep:1" digitsMatch="1,2">room</Conference></Response>"#,
    r#"<Response><GetInput action="https://x.test/a" inputType="dtmf speech"><Speak voice="MAN">hi <break/> there</Speak><Play>u</Play></GetInput></Response>"#,
    r#"<Response><Dial sipHeaders="A=1"><Number sendDigits="1w">+1</Number><User>sip:a@b</User></Dial></Response>"#,
    r#"<Response><PreAnswer><Wait length="2"/></PreAnswer><Record maxLength="9"/><DTMF>1#</DTMF><Hangup reason="busy"/><Redirect>http://x</Redirect></Response>"#,
    "<?xml version=\"1.0\"?><Response><Speak><![CDATA[x < y]]></Speak><!-- c --></Response>",
];

const TOKENS: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "=",
    "\"",
    "'",
    "&",
    "&amp;",
    "&#0;",
    "&#xD800;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?",
    "?>",
    "Response",
    "Conference",
    "Speak",
    "GetDigits",
    "Dial",
    "Number",
    " muted=\"true\"",
    " loop=\"-1\"",
    "\u{0}",
    "é",
    "💥",
    "\n",
    " ",
    "beep:1",
    "https://",
    "<break/>",
    "<Response>",
    "</Response>",
];

#[test]
fn random_and_mutated_documents_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut ok = 0usize;
    for _ in 0..20_000 {
        let doc = match rng.below(3) {
            // Pure token soup.
            0 => {
                let mut s = String::new();
                for _ in 0..rng.below(40) {
                    s.push_str(TOKENS[rng.below(TOKENS.len())]);
                }
                s
            }
            // Seed with character-level mutations.
            1 => {
                let mut chars: Vec<char> = SEEDS[rng.below(SEEDS.len())].chars().collect();
                for _ in 0..=rng.below(6) {
                    let at = rng.below(chars.len() + 1);
                    match rng.below(3) {
                        0 if at < chars.len() => {
                            chars.remove(at);
                        }
                        1 => {
                            let c = char::from_u32(rng.below(0x80) as u32).unwrap_or('x');
                            chars.insert(at, c);
                        }
                        _ if at < chars.len() => {
                            chars[at] = ['<', '>', '"', '/', '&', '='][rng.below(6)]
                        }
                        _ => {}
                    }
                }
                chars.into_iter().collect()
            }
            // Seed with a token spliced in.
            _ => {
                let seed = SEEDS[rng.below(SEEDS.len())];
                let mut at = rng.below(seed.len() + 1);
                while !seed.is_char_boundary(at) {
                    at -= 1;
                }
                format!(
                    "{}{}{}",
                    &seed[..at],
                    TOKENS[rng.below(TOKENS.len())],
                    &seed[at..]
                )
            }
        };
        if parse(&doc).is_ok() {
            ok += 1;
        }
    }
    // The mutations are light enough that some documents stay valid; if none do, the seeds
    // themselves are broken and the loop tested nothing useful.
    assert!(ok > 0, "no generated document parsed");
    for seed in SEEDS {
        parse(seed).expect("seed documents are valid");
    }
}
