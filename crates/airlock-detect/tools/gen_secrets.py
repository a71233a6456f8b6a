#!/usr/bin/env python3
"""Generate rules/secrets.toml: every rule with generated, self-consistent examples.

Run from the repository root: python3 crates/airlock-detect/tools/gen_secrets.py
The examples are random strings of each provider's format (fixed seed, so the output is
stable); tokens with a checksum get a valid one. None of them is a live credential.
"""
import base64, json, random, re, string, zlib, sys

rng = random.Random(20261125)
AN = string.ascii_letters + string.digits
UP = string.ascii_uppercase
UPN = string.ascii_uppercase + string.digits
LOWN = string.ascii_lowercase + string.digits
LOW = string.ascii_lowercase
HEX = "0123456789abcdef"
B64 = string.ascii_letters + string.digits + "+/"
B64U = string.ascii_letters + string.digits + "-_"
B32 = "abcdefghijklmnopqrstuvwxyz234567"

def R(alpha, n):
    while True:
        s = "".join(rng.choice(alpha) for _ in range(n))
        low = s.lower()
        # keep generated examples clear of placeholder markers
        if any(p in low for p in ["example", "xxxx", "fake", "dummy", "sample", "your", "test", "insert", "here", "1234", "abcd"]):
            continue
        if alpha in (AN, B64, B64U) and n >= 8 and not (any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)):
            continue
        return s

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
def crc_tok(prefix):
    rnd = R(AN, 30)
    c = zlib.crc32(rnd.encode()) & 0xffffffff
    s = ""
    for _ in range(6):
        s = B62[c % 62] + s
        c //= 62
    return prefix + rnd + s

def b64(s):
    return base64.b64encode(s.encode()).decode()

def b64u(s):
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")

rules = []
def rule(id, desc, pattern, keywords, severity="high", confidence="high", label=None, pos=(), neg=(), validator=None,
         min_entropy=None, window_before=None, window_after=None, generic=False, refs=(), tags=()):
    rules.append(dict(id=id, description=desc, pattern=pattern, keywords=list(keywords), severity=severity,
                      confidence=confidence, label=label, examples=list(pos), negative_examples=list(neg),
                      validator=validator, min_entropy=min_entropy, window_before=window_before,
                      window_after=window_after, generic=generic, references=list(refs), tags=list(tags)))

END = r"(?:[^A-Za-z0-9_-]|$)"  # token end for tokens that may end in - or _

def prefixed(id, desc, prefix_re, body_re, keywords, label, gen, severity="high", confidence="high", neg=(),
             validator=None, wrap=("token = \"", "\""), tags=(), refs=(), end=r"\b", start=r"\b"):
    tok = gen()
    tok2 = gen()
    pos = [f'{wrap[0]}«{tok}»{wrap[1]}', f'«{tok2}»']
    kw0 = keywords[0]
    neg = list(neg) + [f'{wrap[0]}{kw0}{"x" * 12}{wrap[1]}', f'{kw0}{"X" * 40}']
    wa = 2048 if (",}" in body_re or len(tok) > 200) else None
    rule(id, desc, f"{start}(?P<value>{prefix_re}{body_re}){end}", keywords, severity, confidence, label, pos, neg,
         validator, tags=tags, refs=refs, window_after=wa)

# ---------------------------------------------------------------- AWS
rule("aws-access-key-id", "AWS access key id (AKIA long-term, ASIA temporary).",
     r"\b(?P<value>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16})\b", ["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
     "high", "high", "AWS_ACCESS_KEY_ID",
     pos=[f"aws_access_key_id = «AKIA{R('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)}»", f"«ASIA{R('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)}»"],
     neg=["AKIAIOSFODNN7EXAMPLE", "AKIA1234", "AKIAXXXXXXXXXXXXXXXX"], tags=["aws"],
     refs=["https://docs.aws.amazon.com/IAM/latest/UserGuide/security-creds.html"])
rule("aws-secret-access-key", "AWS secret access key assigned to an AWS secret name.",
     r"""(?i)(?:aws)?_?(?:secret)_?(?:access)?_?key["']?\s*(?:[:=]|=>)\s*["']?(?P<value>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)""",
     ["secret_access_key", "secretaccesskey", "aws_secret", "secret-access-key", "secret_key"], "critical", "high", "AWS_SECRET_ACCESS_KEY",
     pos=[f"aws_secret_access_key = «{R(B64, 40)}»", f'"SecretAccessKey": "«{R(B64, 40)}»"'],
     neg=["aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}"],
     min_entropy=3.5, tags=["aws"])
rule("aws-session-token", "AWS session token assigned to an AWS session-token name.",
     r"""(?i)aws_?session_?token["']?\s*(?:[:=]|=>)\s*["']?(?P<value>[A-Za-z0-9/+=]{100,1200})""",
     ["session_token", "sessiontoken"], "high", "high", "AWS_SESSION_TOKEN",
     pos=[f"aws_session_token = «IQoJb3JpZ2luX2VjE{R(B64, 180)}»"], neg=["aws_session_token = <token>", "aws_session_token = short"],
     min_entropy=4.0, window_after=1400, tags=["aws"])
prefixed("aws-mws-auth-token", "Amazon Marketplace Web Service auth token.", r"amzn\.mws\.",
         r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", ["amzn.mws."], "AMAZON_MWS_TOKEN",
         lambda: f"amzn.mws.{R(HEX,8)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,12)}", tags=["aws"])
prefixed("aws-bedrock-api-key", "Amazon Bedrock long-term API key.", r"ABSKQmVkcm9ja0FQSUtleS", r"[A-Za-z0-9+/]{40,200}={0,2}",
         ["ABSKQmVkcm9ja0FQSUtleS"], "AWS_BEDROCK_KEY", lambda: "ABSK" + b64("BedrockAPIKey-" + R(LOWN, 8) + "-at-" + R(AN, 60)),
         end=r"(?:[^A-Za-z0-9+/=]|$)", tags=["aws", "ai"])

# ---------------------------------------------------------------- GitHub
for pfx, what, label in [("ghp_", "personal access token (classic)", "GITHUB_TOKEN"), ("gho_", "OAuth access token", "GITHUB_OAUTH_TOKEN"),
                         ("ghu_", "user-to-server token", "GITHUB_TOKEN"), ("ghs_", "server-to-server (app installation / Actions) token", "GITHUB_TOKEN"),
                         ("ghr_", "refresh token", "GITHUB_REFRESH_TOKEN")]:
    prefixed(f"github-{ {'ghp_':'pat','gho_':'oauth','ghu_':'user-to-server','ghs_':'server-to-server','ghr_':'refresh'}[pfx] }",
             f"GitHub {what}; the CRC32 checksum in the last 6 characters is verified offline.", pfx, r"[A-Za-z0-9]{36}",
             [pfx], label, lambda p=pfx: crc_tok(p), severity="critical", validator="crc32_base62",
             neg=[f"{pfx}16C7e42F292c6912E7710c838347Ae178B4a"[:10]], tags=["github"],
             refs=["https://github.blog/2021-04-05-behind-githubs-new-authentication-token-formats/"])
prefixed("github-fine-grained-pat", "GitHub fine-grained personal access token.", r"github_pat_", r"[A-Za-z0-9]{22}_[A-Za-z0-9]{59}",
         ["github_pat_"], "GITHUB_TOKEN", lambda: f"github_pat_{R(AN,22)}_{R(AN,59)}", severity="critical", tags=["github"])

# ---------------------------------------------------------------- GitLab
for id, pfx, body, desc, gen in [
    ("gitlab-pat", "glpat-", r"[A-Za-z0-9_-]{20,64}", "GitLab personal/project/group access token.", lambda: "glpat-" + R(AN, 20)),
    ("gitlab-pipeline-trigger-token", "glptt-", r"[0-9a-f]{40}", "GitLab pipeline trigger token.", lambda: "glptt-" + R(HEX, 40)),
    ("gitlab-runner-registration-token", "GR1348941", r"[A-Za-z0-9_-]{20}", "GitLab runner registration token.", lambda: "GR1348941" + R(AN, 20)),
    ("gitlab-runner-auth-token", "glrt-", r"[A-Za-z0-9_-]{20,64}", "GitLab runner authentication token.", lambda: "glrt-" + R(AN, 20)),
    ("gitlab-deploy-token", "gldt-", r"[A-Za-z0-9_-]{20,64}", "GitLab deploy token.", lambda: "gldt-" + R(AN, 20)),
    ("gitlab-feed-token", "glft-", r"[A-Za-z0-9_-]{20,64}", "GitLab feed token.", lambda: "glft-" + R(AN, 20)),
    ("gitlab-oauth-app-secret", "gloas-", r"[A-Za-z0-9_-]{64}", "GitLab OAuth application secret.", lambda: "gloas-" + R(AN, 64)),
    ("gitlab-scim-token", "glsoat-", r"[A-Za-z0-9_-]{20,64}", "GitLab SCIM OAuth token.", lambda: "glsoat-" + R(AN, 20)),
    ("gitlab-incoming-mail-token", "glimt-", r"[A-Za-z0-9_-]{25}", "GitLab incoming mail token.", lambda: "glimt-" + R(AN, 25)),
    ("gitlab-agent-token", "glagent-", r"[A-Za-z0-9_-]{50,64}", "GitLab agent for Kubernetes token.", lambda: "glagent-" + R(AN, 50)),
    ("gitlab-cicd-job-token", "glcbt-", r"[0-9a-zA-Z]{1,5}_[0-9a-zA-Z_-]{20}", "GitLab CI/CD job token.", lambda: "glcbt-" + R(AN, 2) + "_" + R(AN, 20)),
]:
    prefixed(id, desc, pfx, body, [pfx], "GITLAB_TOKEN", gen, severity="critical" if id == "gitlab-pat" else "high",
             end=END if "_-" in body else r"\b", tags=["gitlab"])

# ---------------------------------------------------------------- Atlassian / Bitbucket
prefixed("atlassian-api-token", "Atlassian (Jira/Confluence) API token.", r"ATATT3", r"[A-Za-z0-9_=-]{180,200}", ["ATATT3"], "ATLASSIAN_TOKEN",
         lambda: "ATATT3" + R(AN, 186), end=END)
prefixed("bitbucket-app-password", "Bitbucket app password.", r"ATBB", r"[A-Za-z0-9_=.-]{28,40}", ["ATBB"], "BITBUCKET_TOKEN",
         lambda: "ATBB" + R(AN, 32), end=END)

# ---------------------------------------------------------------- Slack
prefixed("slack-bot-token", "Slack bot token.", r"xoxb-", r"[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24}", ["xoxb-"], "SLACK_TOKEN",
         lambda: f"xoxb-{R(string.digits,12)}-{R(string.digits,13)}-{R(AN,24)}", tags=["slack"])
prefixed("slack-user-token", "Slack user token.", r"xoxp-", r"[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[a-f0-9]{32}", ["xoxp-"], "SLACK_TOKEN",
         lambda: f"xoxp-{R(string.digits,12)}-{R(string.digits,12)}-{R(string.digits,13)}-{R(HEX,32)}", tags=["slack"])
prefixed("slack-app-token", "Slack app-level token.", r"xapp-1-", r"[A-Z0-9]{9,12}-[0-9]{10,14}-[a-f0-9]{64}", ["xapp-"], "SLACK_TOKEN",
         lambda: f"xapp-1-{R(UPN,11)}-{R(string.digits,13)}-{R(HEX,64)}", tags=["slack"])
prefixed("slack-config-access-token", "Slack configuration access token.", r"xoxe\.xox[bp]-1-", r"[A-Za-z0-9]{160,170}", ["xoxe.xox"], "SLACK_TOKEN",
         lambda: f"xoxe.xoxp-1-{R(AN,163)}", tags=["slack"])
prefixed("slack-config-refresh-token", "Slack configuration refresh token.", r"xoxe-1-", r"[A-Za-z0-9]{140,150}", ["xoxe-1-"], "SLACK_TOKEN",
         lambda: f"xoxe-1-{R(AN,146)}", tags=["slack"])
prefixed("slack-legacy-token", "Slack legacy or workspace token.", r"xox[aors]-", r"[0-9]{8,14}-[0-9]{8,14}(?:-[0-9]{8,14})?-[a-f0-9]{24,64}", ["xoxa-", "xoxo-", "xoxr-", "xoxs-"], "SLACK_TOKEN",
         lambda: f"xoxs-{R(string.digits,11)}-{R(string.digits,11)}-{R(string.digits,12)}-{R(HEX,64)}", tags=["slack"])
rule("slack-webhook-url", "Slack incoming webhook or workflow URL.",
     r"(?P<value>https?://hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Z0-9]{8,12}/[AB][A-Z0-9]{8,12}/[A-Za-z0-9]{20,32})",
     ["hooks.slack.com"], "high", "high", "SLACK_WEBHOOK",
     pos=[f"url = «https://hooks.slack.com/services/T{R(UPN,10)}/B{R(UPN,10)}/{R(AN,24)}»"],
     neg=["https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "https://hooks.slack.com/"], tags=["slack"])

# ---------------------------------------------------------------- Payments
prefixed("stripe-secret-key", "Stripe live secret key.", r"sk_live_", r"[A-Za-z0-9]{24,99}", ["sk_live_"], "STRIPE_KEY",
         lambda: "sk_live_" + R(AN, 24), severity="critical", neg=["pk_live_" + R(AN, 24)], tags=["stripe", "payment"])
prefixed("stripe-test-secret-key", "Stripe test-mode secret key.", r"sk_test_", r"[A-Za-z0-9]{24,99}", ["sk_test_"], "STRIPE_KEY",
         lambda: "sk_test_" + R(AN, 24), severity="low", tags=["stripe", "payment"])
prefixed("stripe-restricted-key", "Stripe live restricted key.", r"rk_live_", r"[A-Za-z0-9]{24,99}", ["rk_live_"], "STRIPE_KEY",
         lambda: "rk_live_" + R(AN, 24), severity="critical", tags=["stripe", "payment"])
prefixed("stripe-webhook-secret", "Stripe webhook signing secret.", r"whsec_", r"[A-Za-z0-9]{32,64}", ["whsec_"], "STRIPE_WEBHOOK_SECRET",
         lambda: "whsec_" + R(AN, 32), tags=["stripe", "payment"])
prefixed("square-access-token", "Square access token.", r"EAAA", r"[A-Za-z0-9_-]{60}", ["EAAA"], "SQUARE_TOKEN",
         lambda: "EAAA" + R(AN, 60), end=END, tags=["payment"])
prefixed("square-oauth-secret", "Square OAuth secret.", r"sq0csp-", r"[A-Za-z0-9_-]{43}", ["sq0csp-"], "SQUARE_TOKEN",
         lambda: "sq0csp-" + R(AN, 43), end=END, tags=["payment"])
prefixed("square-legacy-token", "Square legacy access token.", r"sq0atp-", r"[A-Za-z0-9_-]{22}", ["sq0atp-"], "SQUARE_TOKEN",
         lambda: "sq0atp-" + R(AN, 22), end=END, tags=["payment"])
prefixed("braintree-access-token", "PayPal Braintree production access token.", r"access_token\$production\$", r"[0-9a-z]{16}\$[0-9a-f]{32}",
         ["access_token$production$"], "BRAINTREE_TOKEN", lambda: f"access_token$production${R(LOWN,16)}${R(HEX,32)}", start="", tags=["payment"])
prefixed("flutterwave-secret-key", "Flutterwave secret key.", r"FLWSECK(?:_TEST)?-", r"[a-f0-9]{32}-X", ["FLWSECK"], "FLUTTERWAVE_KEY",
         lambda: f"FLWSECK-{R(HEX,32)}-X", tags=["payment"])
prefixed("razorpay-live-key", "Razorpay live key id.", r"rzp_live_", r"[A-Za-z0-9]{14}", ["rzp_live_"], "RAZORPAY_KEY",
         lambda: "rzp_live_" + R(AN, 14), severity="medium", tags=["payment"])
prefixed("gocardless-live-token", "GoCardless live access token.", r"live_", r"[A-Za-z0-9_=-]{40}", ["live_"], "GOCARDLESS_TOKEN",
         lambda: "live_" + R(AN, 40), end=END, tags=["payment"])
prefixed("plaid-access-token", "Plaid access token.", r"access-(?:sandbox|development|production)-", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
         ["access-production-", "access-development-", "access-sandbox-"], "PLAID_TOKEN",
         lambda: f"access-production-{R(HEX,8)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,12)}", tags=["payment"])
prefixed("shippo-live-token", "Shippo live API token.", r"shippo_live_", r"[a-f0-9]{40}", ["shippo_live_"], "SHIPPO_TOKEN",
         lambda: "shippo_live_" + R(HEX, 40))
prefixed("easypost-api-key", "EasyPost production API key.", r"EZAK", r"[A-Za-z0-9]{54}", ["EZAK"], "EASYPOST_KEY", lambda: "EZAK" + R(AN, 54))

# ---------------------------------------------------------------- AI providers
rule("openai-project-key", "OpenAI project, service-account or admin API key.",
     r"\b(?P<value>sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,200}T3BlbkFJ[A-Za-z0-9_-]{20,200})" + END,
     ["T3BlbkFJ"], "critical", "high", "OPENAI_API_KEY",
     pos=[f"OPENAI_API_KEY=«sk-proj-{R(AN,74)}T3BlbkFJ{R(AN,74)}»", f"«sk-svcacct-{R(AN,40)}T3BlbkFJ{R(AN,40)}»"],
     neg=["sk-proj-XXXXXXXXXXXXXXXXXXXXT3BlbkFJXXXXXXXXXXXXXXXXXXXX", "sk-proj-abc"], window_before=220, tags=["ai", "openai"])
rule("openai-legacy-key", "OpenAI user API key (legacy format).",
     r"\b(?P<value>sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})\b", ["T3BlbkFJ"], "critical", "high", "OPENAI_API_KEY",
     pos=[f"openai.api_key = \"«sk-{R(AN,20)}T3BlbkFJ{R(AN,20)}»\""], neg=["sk-XXXXXXXXXXXXXXXXXXXXT3BlbkFJXXXXXXXXXXXXXXXXXXXX"], window_before=40, tags=["ai", "openai"])
rule("openai-key-context", "API key of the `sk-` family assigned to an OpenAI name.",
     r"""(?i)openai[\w.-]{0,20}(?:key|token)["']?\s*(?:[:=]|=>)\s*["']?(?P<value>sk-[A-Za-z0-9_-]{32,200})""",
     ["openai"], "high", "medium", "OPENAI_API_KEY",
     pos=[f"OPENAI_API_KEY=«sk-{R(AN,48)}»"], neg=["OPENAI_API_KEY=sk-your-key-here", "OPENAI_API_KEY=${OPENAI_API_KEY}"],
     min_entropy=3.5, generic=True, tags=["ai", "openai"])
prefixed("anthropic-api-key", "Anthropic API key.", r"sk-ant-api03-", r"[A-Za-z0-9_-]{93}AA", ["sk-ant-api"], "ANTHROPIC_API_KEY",
         lambda: f"sk-ant-api03-{R(AN,93)}AA", severity="critical", end=END, tags=["ai", "anthropic"])
prefixed("anthropic-admin-key", "Anthropic Admin API key.", r"sk-ant-admin01-", r"[A-Za-z0-9_-]{93}AA", ["sk-ant-admin"], "ANTHROPIC_API_KEY",
         lambda: f"sk-ant-admin01-{R(AN,93)}AA", severity="critical", end=END, tags=["ai", "anthropic"])
prefixed("anthropic-oauth-token", "Anthropic OAuth access or refresh token (Claude subscriptions).", r"sk-ant-o(?:at|rt)01-", r"[A-Za-z0-9_-]{80,120}",
         ["sk-ant-oat", "sk-ant-ort"], "ANTHROPIC_OAUTH_TOKEN", lambda: f"sk-ant-oat01-{R(AN,95)}", severity="critical", end=END, tags=["ai", "anthropic"])
prefixed("google-api-key", "Google API key (Maps, Gemini, Firebase...).", r"AIza", r"[0-9A-Za-z_-]{35}", ["AIza"], "GOOGLE_API_KEY",
         lambda: "AIza" + R(AN, 35), end=END, tags=["google", "ai"])
prefixed("openrouter-api-key", "OpenRouter API key.", r"sk-or-v1-", r"[a-f0-9]{64}", ["sk-or-v1-"], "OPENROUTER_API_KEY", lambda: "sk-or-v1-" + R(HEX, 64), tags=["ai"])
prefixed("groq-api-key", "Groq API key.", r"gsk_", r"[A-Za-z0-9]{52}", ["gsk_"], "GROQ_API_KEY", lambda: "gsk_" + R(AN, 52), tags=["ai"])
prefixed("xai-api-key", "xAI (Grok) API key.", r"xai-", r"[A-Za-z0-9]{80}", ["xai-"], "XAI_API_KEY", lambda: "xai-" + R(AN, 80), tags=["ai"])
prefixed("perplexity-api-key", "Perplexity API key.", r"pplx-", r"[A-Za-z0-9]{48}", ["pplx-"], "PERPLEXITY_API_KEY", lambda: "pplx-" + R(AN, 48), tags=["ai"])
prefixed("replicate-api-token", "Replicate API token.", r"r8_", r"[A-Za-z0-9]{37}", ["r8_"], "REPLICATE_API_TOKEN", lambda: "r8_" + R(AN, 37), tags=["ai"])
prefixed("huggingface-token", "Hugging Face user access token.", r"hf_", r"[A-Za-z]{34}", ["hf_"], "HF_TOKEN",
         lambda: "hf_" + R(string.ascii_letters, 34), tags=["ai"])
prefixed("huggingface-org-token", "Hugging Face organisation API token.", r"api_org_", r"[A-Za-z]{34}", ["api_org_"], "HF_TOKEN",
         lambda: "api_org_" + R(string.ascii_letters, 34), tags=["ai"])
prefixed("langsmith-api-key", "LangSmith / LangChain API key.", r"lsv2_(?:pt|sk)_", r"[a-f0-9]{32}_[a-f0-9]{10}", ["lsv2_"], "LANGSMITH_API_KEY",
         lambda: f"lsv2_pt_{R(HEX,32)}_{R(HEX,10)}", tags=["ai"])
prefixed("pinecone-api-key", "Pinecone API key.", r"pcsk_", r"[A-Za-z0-9_]{50,120}", ["pcsk_"], "PINECONE_API_KEY",
         lambda: f"pcsk_{R(AN,6)}_{R(AN,60)}", tags=["ai"])
prefixed("nvidia-api-key", "NVIDIA NGC / build.nvidia.com API key.", r"nvapi-", r"[A-Za-z0-9_-]{64}", ["nvapi-"], "NVIDIA_API_KEY",
         lambda: "nvapi-" + R(AN, 64), end=END, tags=["ai"])
prefixed("cerebras-api-key", "Cerebras API key.", r"csk-", r"[a-z0-9]{48}", ["csk-"], "CEREBRAS_API_KEY", lambda: "csk-" + R(LOWN, 48), tags=["ai"])
prefixed("tavily-api-key", "Tavily API key.", r"tvly-(?:dev-|prod-)?", r"[A-Za-z0-9]{32}", ["tvly-"], "TAVILY_API_KEY", lambda: "tvly-dev-" + R(AN, 32), tags=["ai"])
prefixed("firecrawl-api-key", "Firecrawl API key.", r"fc-", r"[a-f0-9]{32}", ["fc-"], "FIRECRAWL_API_KEY", lambda: "fc-" + R(HEX, 32), severity="medium", tags=["ai"])
for prov, label in [("deepseek", "DEEPSEEK_API_KEY"), ("dashscope", "DASHSCOPE_API_KEY"), ("moonshot", "MOONSHOT_API_KEY")]:
    rule(f"{prov}-api-key", f"{prov.capitalize()} API key (`sk-` + 32 hex) assigned to a {prov} name.",
         rf"""(?i){prov}[\w.-]{{0,20}}(?:key|token)["']?\s*(?:[:=]|=>)\s*["']?(?P<value>sk-[a-f0-9]{{32}})\b""",
         [prov], "high", "high", label, pos=[f"{prov.upper()}_API_KEY=«sk-{R(HEX,32)}»"], neg=[f"{prov.upper()}_API_KEY=sk-xxxxxxxx"], tags=["ai"])
for prov, n, label in [("mistral", 32, "MISTRAL_API_KEY"), ("cohere", 40, "COHERE_API_KEY"), ("together", 64, "TOGETHER_API_KEY"), ("fireworks", 48, "FIREWORKS_API_KEY")]:
    rule(f"{prov}-api-key", f"{prov.capitalize()} API key assigned to a {prov} name.",
         rf"""(?i){prov}[\w.-]{{0,20}}(?:key|token)["']?\s*(?:[:=]|=>)\s*["']?(?P<value>(?:fw_)?[A-Za-z0-9]{{{n-8},{n+8}}})\b""",
         [prov], "high", "medium", label, pos=[f"{prov.upper()}_API_KEY=«{R(AN,n)}»"], neg=[f"{prov.upper()}_API_KEY=<your key>", f"{prov}_key = get_{prov}_key()"],
         min_entropy=3.5, tags=["ai"])

# ---------------------------------------------------------------- Google / Azure / clouds
rule("gcp-service-account-key", "Google Cloud service-account key JSON (the private key after its private_key_id).",
     r'''"private_key_id"\s*:\s*"[0-9a-f]{40}"\s*,\s*"private_key"\s*:\s*"(?P<value>-----BEGIN (?:RSA )?PRIVATE KEY-----(?:\\n|[A-Za-z0-9+/=\s])+?-----END (?:RSA )?PRIVATE KEY-----(?:\\n)?)''',
     ["private_key_id"], "critical", "high", "GCP_SERVICE_ACCOUNT_KEY",
     pos=['{"type": "service_account", "project_id": "p", "private_key_id": "' + R(HEX, 40) + '", "private_key": "«-----BEGIN PRIVATE KEY-----\\n' + R(B64, 64) + '\\n' + R(B64, 64) + '\\n-----END PRIVATE KEY-----\\n»", "client_email": "a@p.iam.gserviceaccount.com"}'],
     neg=['{"type": "service_account", "private_key_id": "' + R(HEX, 40) + '", "private_key": "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----\\n"}'],
     window_before=16, window_after=12000, tags=["google"])
prefixed("google-oauth-client-secret", "Google OAuth client secret.", r"GOCSPX-", r"[A-Za-z0-9_-]{28}", ["GOCSPX-"], "GOOGLE_CLIENT_SECRET",
         lambda: "GOCSPX-" + R(AN, 28), end=END, tags=["google"])
prefixed("google-oauth-access-token", "Google OAuth access token.", r"ya29\.", r"[A-Za-z0-9_-]{30,300}", ["ya29."], "GOOGLE_ACCESS_TOKEN",
         lambda: "ya29." + R(AN, 120), end=END, tags=["google"])
prefixed("google-oauth-refresh-token", "Google OAuth refresh token.", r"1//0", r"[A-Za-z0-9_-]{40,200}", ["1//0"], "GOOGLE_REFRESH_TOKEN",
         lambda: "1//0" + R(AN, 100), end=END, start="", tags=["google"])
rule("firebase-fcm-server-key", "Firebase Cloud Messaging legacy server key.",
     r"\b(?P<value>AAAA[A-Za-z0-9_-]{7}:APA91b[A-Za-z0-9_-]{130,160})", [":APA91b"], "high", "high", "FCM_SERVER_KEY",
     pos=[f"«AAAA{R(AN,7)}:APA91b{R(AN,134)}»"], neg=["AAAA:APA91b"], window_before=20, window_after=200, tags=["google"])
rule("azure-storage-account-key", "Azure Storage / Cosmos DB account key in a connection string.",
     r"(?i)AccountKey=(?P<value>[A-Za-z0-9+/]{86}==)", ["AccountKey="], "critical", "high", "AZURE_STORAGE_KEY",
     pos=[f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=«{R(B64,86)}==»;EndpointSuffix=core.windows.net"],
     neg=["DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==", "AccountKey=<key>"],
     tags=["azure"])
rule("azure-sas-token", "Azure shared access signature in a URL or connection string.",
     r"(?i)[?&;]sv=\d{4}-\d{2}-\d{2}[^\s\"'<>]{0,300}?[&;]sig=(?P<value>[A-Za-z0-9%+/]{40,100}(?:%3D|=){0,2})", ["sig="], "high", "high", "AZURE_SAS_TOKEN",
     pos=[f"https://acct.blob.core.windows.net/c?sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2030-01-01T00:00:00Z&sig=«{R(AN,44)}%3D»"],
     neg=["https://acct.blob.core.windows.net/c?sv=2022-11-02&sig=<signature>"], window_before=400, window_after=120, tags=["azure"])
rule("azure-ad-client-secret", "Microsoft Entra ID (Azure AD) application client secret.",
     r"(?:^|[^A-Za-z0-9_~.-])(?P<value>[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34})(?:[^A-Za-z0-9_~.-]|$)", ["Q~"], "critical", "high", "AZURE_CLIENT_SECRET",
     pos=[f"client_secret = \"«{R(AN,3)}8Q~{R(AN,34)}»\""], neg=["Q~abc", "x8Q~short"], window_before=8, window_after=40, tags=["azure"])
rule("azure-service-bus-key", "Azure Service Bus / Event Hubs / IoT Hub shared access key in a connection string.",
     r"(?i)SharedAccessKey=(?P<value>[A-Za-z0-9+/]{43}=)", ["SharedAccessKey="], "high", "high", "AZURE_SHARED_ACCESS_KEY",
     pos=[f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=«{R(B64,43)}=»"],
     neg=["SharedAccessKey=<key>", "SharedAccessKeyName=RootManageSharedAccessKey"], tags=["azure"])
rule("azure-devops-pat", "Azure DevOps personal access token assigned to an Azure DevOps name.",
     r"""(?i)(?:azure|ado|devops|vsts)[\w.-]{0,20}(?:pat|token)\w*["']?\s*(?:[:=]|=>)\s*["']?(?P<value>[a-z2-7]{52}|[A-Za-z0-9]{84})\b""",
     ["azure", "devops", "vsts", "ado_"], "high", "medium", "AZURE_DEVOPS_TOKEN",
     pos=[f"AZURE_DEVOPS_PAT=«{R(B32,52)}»"], neg=["AZURE_DEVOPS_PAT=$(System.AccessToken)"], tags=["azure"])
rule("azure-openai-key", "Azure OpenAI / Cognitive Services key assigned to an Azure OpenAI name.",
     r"""(?i)azure[_-]?(?:openai|cognitive|ai)[\w-]{0,20}key["']?\s*(?:[:=]|=>)\s*["']?(?P<value>[a-f0-9]{32}|[A-Za-z0-9]{84})\b""",
     ["azure_openai", "azure-openai", "azure_cognitive", "azure_ai"], "high", "high", "AZURE_OPENAI_KEY",
     pos=[f"AZURE_OPENAI_API_KEY=«{R(HEX,32)}»"], neg=["AZURE_OPENAI_API_KEY=<key>"], tags=["azure", "ai"])
prefixed("alibaba-access-key-id", "Alibaba Cloud AccessKey ID.", r"LTAI", r"[A-Za-z0-9]{20}", ["LTAI"], "ALIBABA_ACCESS_KEY", lambda: "LTAI" + R(AN, 20), tags=["cloud"])
prefixed("tencent-cloud-secret-id", "Tencent Cloud SecretId.", r"AKID", r"[A-Za-z0-9]{32}", ["AKID"], "TENCENT_SECRET_ID", lambda: "AKID" + R(AN, 32), tags=["cloud"])
prefixed("digitalocean-pat", "DigitalOcean personal access token.", r"dop_v1_", r"[a-f0-9]{64}", ["dop_v1_"], "DIGITALOCEAN_TOKEN", lambda: "dop_v1_" + R(HEX, 64), tags=["cloud"])
prefixed("digitalocean-oauth-token", "DigitalOcean OAuth access token.", r"doo_v1_", r"[a-f0-9]{64}", ["doo_v1_"], "DIGITALOCEAN_TOKEN", lambda: "doo_v1_" + R(HEX, 64), tags=["cloud"])
prefixed("digitalocean-refresh-token", "DigitalOcean OAuth refresh token.", r"dor_v1_", r"[a-f0-9]{64}", ["dor_v1_"], "DIGITALOCEAN_TOKEN", lambda: "dor_v1_" + R(HEX, 64), tags=["cloud"])
prefixed("databricks-token", "Databricks personal access token.", r"dapi", r"[a-f0-9]{32}(?:-\d)?", ["dapi"], "DATABRICKS_TOKEN", lambda: "dapi" + R(HEX, 32), tags=["cloud"])
prefixed("heroku-api-key-v2", "Heroku API key (new format).", r"HRKU-", r"[A-Za-z0-9_-]{60}", ["HRKU-"], "HEROKU_API_KEY", lambda: "HRKU-" + R(AN, 60), end=END, tags=["cloud"])
rule("heroku-api-key", "Heroku API key (UUID) assigned to a Heroku name.",
     r"""(?i)heroku[\w.-]{0,20}(?:key|token)["']?\s*(?:[:=]|=>)\s*["']?(?P<value>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b""",
     ["heroku"], "high", "medium", "HEROKU_API_KEY", pos=[f"HEROKU_API_KEY={{}}".format("«" + f"{R(HEX,8)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,12)}" + "»")],
     neg=["HEROKU_API_KEY=00000000-0000-0000-0000-000000000000"], tags=["cloud"])
prefixed("fly-io-token", "Fly.io access token.", r"fo1_", r"[A-Za-z0-9_-]{43}", ["fo1_"], "FLY_API_TOKEN", lambda: "fo1_" + R(AN, 43), end=END, tags=["cloud"])
prefixed("render-api-key", "Render API key.", r"rnd_", r"[A-Za-z0-9]{32}", ["rnd_"], "RENDER_API_KEY", lambda: "rnd_" + R(AN, 32), tags=["cloud"])
prefixed("supabase-pat", "Supabase personal access token.", r"sbp_", r"[a-f0-9]{40}", ["sbp_"], "SUPABASE_TOKEN", lambda: "sbp_" + R(HEX, 40), tags=["cloud"])
prefixed("supabase-secret-key", "Supabase secret API key.", r"sb_secret_", r"[A-Za-z0-9_-]{31,40}", ["sb_secret_"], "SUPABASE_TOKEN", lambda: "sb_secret_" + R(AN, 31), end=END, tags=["cloud"])
prefixed("planetscale-token", "PlanetScale service token, password or OAuth token.", r"pscale_(?:tkn|pw|oauth)_", r"[A-Za-z0-9_.-]{32,64}",
         ["pscale_"], "PLANETSCALE_TOKEN", lambda: "pscale_pw_" + R(AN, 43), end=END, tags=["database"])
prefixed("terraform-cloud-token", "Terraform Cloud / HCP Terraform API token.", r"[A-Za-z0-9]{14}\.atlasv1\.", r"[A-Za-z0-9_=-]{60,70}",
         [".atlasv1."], "TFC_TOKEN", lambda: R(AN, 14) + ".atlasv1." + R(AN, 67), end=END, tags=["hashicorp"])
prefixed("vault-service-token", "HashiCorp Vault service or batch token.", r"hv[sb]\.", r"[A-Za-z0-9_-]{90,200}", ["hvs.", "hvb."], "VAULT_TOKEN",
         lambda: "hvs." + R(AN, 95), end=END, tags=["hashicorp"])
prefixed("doppler-token", "Doppler service or personal token.", r"dp\.(?:pt|st|sa|ct|scim|audit)\.", r"[A-Za-z0-9]{40,44}", ["dp.pt.", "dp.st.", "dp.sa.", "dp.ct."], "DOPPLER_TOKEN",
         lambda: "dp.pt." + R(AN, 43))
prefixed("pulumi-access-token", "Pulumi access token.", r"pul-", r"[a-f0-9]{40}", ["pul-"], "PULUMI_TOKEN", lambda: "pul-" + R(HEX, 40))
prefixed("onepassword-service-account-token", "1Password service account token.", r"ops_eyJ", r"[A-Za-z0-9+/]{250,}={0,3}", ["ops_eyJ"], "OP_SERVICE_ACCOUNT_TOKEN",
         lambda: "ops_" + b64('{"signInAddress":"my.1password.com","userAuth":{"method":"SRPg-4096","alg":"PBES2g-HS256","iterations":650000,"salt":"' + R(AN, 22) + '"},"email":"' + R(LOWN, 26) + '@1passwordserviceaccounts.com","srpX":"' + R(HEX, 64) + '","muk":{"alg":"A256GCM"}}').rstrip("="),
         end=r"(?:[^A-Za-z0-9+/=]|$)")
prefixed("openshift-oauth-token", "OpenShift user OAuth access token.", r"sha256~", r"[A-Za-z0-9_-]{43}", ["sha256~"], "OPENSHIFT_TOKEN", lambda: "sha256~" + R(AN, 43), end=END, start="")

# ---------------------------------------------------------------- Packages / CI
prefixed("npm-access-token", "npm access token; the CRC32 checksum in the last 6 characters is verified offline.", r"npm_", r"[A-Za-z0-9]{36}", ["npm_"], "NPM_TOKEN",
         lambda: crc_tok("npm_"), severity="critical", validator="crc32_base62", tags=["npm"],
         refs=["https://github.blog/2021-09-23-announcing-npms-new-access-token-format/"])
rule("npmrc-auth-token", "Registry auth token in an .npmrc file.",
     r"""(?i)_authToken\s*=\s*["']?(?P<value>[A-Za-z0-9_+/=.-]{16,512})""", ["_authToken"], "critical", "high", "NPM_TOKEN",
     pos=[f"//registry.npmjs.org/:_authToken=«{R(HEX,8)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,12)}»"],
     neg=["//registry.npmjs.org/:_authToken=${NPM_TOKEN}", "_authToken=<token>"], tags=["npm"])
rule("npmrc-auth", "Base64 `user:password` in an .npmrc `_auth` line.",
     r"""(?im)^\s*(?://[^\s:]+:)?_auth\s*=\s*["']?(?P<value>[A-Za-z0-9+/]{8,512}={0,2})""", ["_auth"], "critical", "high", "NPM_AUTH",
     pos=[f"_auth=«{b64('deploy:' + R(AN, 16))}»"], neg=["_auth=${NPM_AUTH}", "_auth = " + b64("nouser")], validator="basic_auth_b64", tags=["npm"])
rule("npmrc-password", "Base64 password in an .npmrc `_password` line.",
     r"""(?im)^\s*(?://[^\s:]+:)?_password\s*=\s*["']?(?P<value>[A-Za-z0-9+/]{8,512}={0,2})""", ["_password"], "critical", "high", "NPM_PASSWORD",
     pos=[f"//npm.corp.local/:_password=«{b64(R(AN, 16))}»"], neg=["_password=${NPM_PASSWORD}"], min_entropy=3.0, tags=["npm"])
prefixed("pypi-upload-token", "PyPI upload token (macaroon for pypi.org).", r"pypi-AgEIcHlwaS5vcmc", r"[A-Za-z0-9_-]{50,300}", ["pypi-AgEIcHlwaS5vcmc"], "PYPI_TOKEN",
         lambda: "pypi-AgEIcHlwaS5vcmc" + R(AN, 150), severity="critical", end=END, tags=["python"])
prefixed("testpypi-upload-token", "TestPyPI upload token.", r"pypi-AgENdGVzdC5weXBpLm9yZw", r"[A-Za-z0-9_-]{50,300}", ["pypi-AgENdGVzdC5weXBpLm9yZw"], "PYPI_TOKEN",
         lambda: "pypi-AgENdGVzdC5weXBpLm9yZw" + R(AN, 150), severity="medium", end=END, tags=["python"])
prefixed("rubygems-api-key", "RubyGems API key.", r"rubygems_", r"[a-f0-9]{48}", ["rubygems_"], "RUBYGEMS_API_KEY", lambda: "rubygems_" + R(HEX, 48))
prefixed("nuget-api-key", "NuGet API key.", r"oy2", r"[a-z0-9]{43}", ["oy2"], "NUGET_API_KEY", lambda: "oy2" + R(LOWN, 43), severity="high")
prefixed("clojars-token", "Clojars deploy token.", r"CLOJARS_", r"[a-z0-9]{60}", ["CLOJARS_"], "CLOJARS_TOKEN", lambda: "CLOJARS_" + R(LOWN, 60))
prefixed("crates-io-token", "crates.io API token.", r"cio", r"[A-Za-z0-9]{32}", ["cio"], "CARGO_REGISTRY_TOKEN", lambda: "cio" + R(AN, 32), min_entropy=None) if False else None
rule("crates-io-token", "crates.io API token.", r"\b(?P<value>cio[A-Za-z0-9]{32})\b", ["cio"], "high", "medium", "CARGO_REGISTRY_TOKEN",
     pos=[f"CARGO_REGISTRY_TOKEN=«cio{R(AN,32)}»"], neg=["cioXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "ciorandom"], min_entropy=3.5)
prefixed("dockerhub-pat", "Docker Hub personal access token.", r"dckr_pat_", r"[A-Za-z0-9_-]{27}", ["dckr_pat_"], "DOCKER_TOKEN", lambda: "dckr_pat_" + R(AN, 27), end=END)
prefixed("dockerhub-oat", "Docker Hub organisation access token.", r"dckr_oat_", r"[A-Za-z0-9_-]{32}", ["dckr_oat_"], "DOCKER_TOKEN", lambda: "dckr_oat_" + R(AN, 32), end=END)
rule("docker-config-auth", "Base64 `user:password` in a Docker config.json `auth` field.",
     r""""auth"\s*:\s*"(?P<value>[A-Za-z0-9+/]{8,1024}={0,2})\"""", ['"auth"'], "critical", "high", "DOCKER_AUTH",
     pos=['{"auths": {"registry.corp.io": {"auth": "«' + b64("ci-bot:" + R(AN, 20)) + '»"}}}'],
     neg=['{"auths": {"r": {"auth": ""}}}', '{"auth": "' + b64("justtext") + '"}'], validator="basic_auth_b64")
prefixed("jfrog-api-key", "JFrog Artifactory API key.", r"AKCp", r"[A-Za-z0-9]{69}", ["AKCp"], "JFROG_API_KEY", lambda: "AKCp" + R(AN, 69))
prefixed("circleci-pat", "CircleCI personal API token.", r"CCIPAT_", r"[A-Za-z0-9]{22}_[a-f0-9]{40}", ["CCIPAT_"], "CIRCLECI_TOKEN", lambda: f"CCIPAT_{R(AN,22)}_{R(HEX,40)}")
prefixed("buildkite-token", "Buildkite user access token.", r"bkua_", r"[a-f0-9]{40}", ["bkua_"], "BUILDKITE_TOKEN", lambda: "bkua_" + R(HEX, 40))
prefixed("sonarqube-token", "SonarQube / SonarCloud token.", r"sq[pua]_", r"[a-f0-9]{40}", ["sqp_", "squ_", "sqa_"], "SONAR_TOKEN", lambda: "squ_" + R(HEX, 40))
prefixed("octopus-deploy-api-key", "Octopus Deploy API key.", r"API-", r"[A-Z0-9]{26}", ["API-"], "OCTOPUS_API_KEY", lambda: "API-" + R(UPN, 26), confidence="medium")
prefixed("harness-pat", "Harness personal access or service account token.", r"pat\.", r"[A-Za-z0-9_-]{22}\.[0-9a-f]{24}\.[A-Za-z0-9]{20}", ["pat."], "HARNESS_TOKEN",
         lambda: f"pat.{R(AN,22)}.{R(HEX,24)}.{R(AN,20)}")
prefixed("prefect-api-key", "Prefect Cloud API key.", r"pnu_", r"[A-Za-z0-9]{36}", ["pnu_"], "PREFECT_API_KEY", lambda: "pnu_" + R(AN, 36))
prefixed("readme-api-key", "ReadMe API key.", r"rdme_", r"[a-z0-9]{70}", ["rdme_"], "README_API_KEY", lambda: "rdme_" + R(LOWN, 70))
prefixed("infracost-api-key", "Infracost API key.", r"ico-", r"[A-Za-z0-9]{32}", ["ico-"], "INFRACOST_API_KEY", lambda: "ico-" + R(AN, 32))
prefixed("postman-api-key", "Postman API key.", r"PMAK-", r"[a-f0-9]{24}-[a-f0-9]{34}", ["PMAK-"], "POSTMAN_API_KEY", lambda: f"PMAK-{R(HEX,24)}-{R(HEX,34)}")

# ---------------------------------------------------------------- Observability / SaaS
prefixed("grafana-cloud-token", "Grafana Cloud API token.", r"glc_", r"[A-Za-z0-9+/]{32,400}={0,2}", ["glc_"], "GRAFANA_TOKEN", lambda: "glc_" + R(AN, 120), end=r"(?:[^A-Za-z0-9+/=]|$)")
prefixed("grafana-service-account-token", "Grafana service account token.", r"glsa_", r"[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}", ["glsa_"], "GRAFANA_TOKEN", lambda: f"glsa_{R(AN,32)}_{R(HEX,8)}")
prefixed("newrelic-user-api-key", "New Relic user API key.", r"NRAK-", r"[A-Z0-9]{27}", ["NRAK-"], "NEW_RELIC_KEY", lambda: "NRAK-" + R(UPN, 27))
prefixed("newrelic-insert-key", "New Relic insights insert key.", r"NRII-", r"[A-Za-z0-9_-]{32}", ["NRII-"], "NEW_RELIC_KEY", lambda: "NRII-" + R(AN, 32), end=END)
prefixed("newrelic-browser-key", "New Relic browser API key.", r"NRJS-", r"[a-f0-9]{19}", ["NRJS-"], "NEW_RELIC_KEY", lambda: "NRJS-" + R(HEX, 19), severity="medium")
rule("datadog-api-key", "Datadog API or application key assigned to a Datadog name.",
     r"""(?i)(?:datadog|dd)_?(?:api|app|application)_?key["']?\s*(?:[:=]|=>)\s*["']?(?P<value>[a-f0-9]{32}|[a-f0-9]{40})\b""",
     ["datadog", "dd_api", "dd_app", "ddapi", "ddapp"], "high", "high", "DATADOG_API_KEY",
     pos=[f"DD_API_KEY=«{R(HEX,32)}»"], neg=["DD_API_KEY=<DATADOG_API_KEY>"])
prefixed("sentry-org-token", "Sentry organisation auth token.", r"sntrys_eyJ", r"[A-Za-z0-9+/=_-]{80,300}", ["sntrys_"], "SENTRY_TOKEN",
         lambda: "sntrys_" + b64u('{"iat":1700000000.0,"url":"https://sentry.io","region_url":"https://us.sentry.io","org":"' + R(LOWN, 10) + '"}') + "_" + R(AN, 43), end=END)
prefixed("sentry-user-token", "Sentry user auth token.", r"sntryu_", r"[a-f0-9]{64}", ["sntryu_"], "SENTRY_TOKEN", lambda: "sntryu_" + R(HEX, 64))
prefixed("dynatrace-token", "Dynatrace API token.", r"dt0c01\.", r"[A-Z0-9]{24}\.[A-Z0-9]{64}", ["dt0c01."], "DYNATRACE_TOKEN", lambda: f"dt0c01.{R(UPN,24)}.{R(UPN,64)}")
prefixed("linear-api-key", "Linear API key.", r"lin_api_", r"[A-Za-z0-9]{40}", ["lin_api_"], "LINEAR_API_KEY", lambda: "lin_api_" + R(AN, 40))
prefixed("notion-integration-token", "Notion integration token.", r"ntn_", r"[0-9]{11}[A-Za-z0-9]{35}", ["ntn_"], "NOTION_TOKEN", lambda: "ntn_" + R(string.digits, 11) + R(AN, 35))
rule("notion-legacy-token", "Notion integration secret (legacy `secret_` format) assigned to a Notion name.",
     r"""(?i)notion[\w.-]{0,20}(?:key|token|secret)["']?\s*(?:[:=]|=>)\s*["']?(?P<value>secret_[A-Za-z0-9]{43})\b""", ["notion"], "high", "high", "NOTION_TOKEN",
     pos=[f"NOTION_TOKEN=«secret_{R(AN,43)}»"], neg=["NOTION_TOKEN=secret_xxx"])
prefixed("figma-pat", "Figma personal access token.", r"figd_", r"[A-Za-z0-9_-]{40}", ["figd_"], "FIGMA_TOKEN", lambda: "figd_" + R(AN, 40), end=END)
prefixed("contentful-pat", "Contentful personal access token.", r"CFPAT-", r"[A-Za-z0-9_-]{43}", ["CFPAT-"], "CONTENTFUL_TOKEN", lambda: "CFPAT-" + R(AN, 43), end=END)
prefixed("typeform-pat", "Typeform personal access token.", r"tfp_", r"[A-Za-z0-9_.-]{59}", ["tfp_"], "TYPEFORM_TOKEN", lambda: "tfp_" + R(AN, 59), end=r"(?:[^A-Za-z0-9_.-]|$)")
prefixed("hubspot-pat", "HubSpot private app access token.", r"pat-(?:na|eu)1-", r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", ["pat-na1-", "pat-eu1-"], "HUBSPOT_TOKEN",
         lambda: f"pat-na1-{R(HEX,8)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,12)}")
prefixed("mapbox-secret-token", "Mapbox secret access token.", r"sk\.eyJ", r"[A-Za-z0-9_-]{50,200}\.[A-Za-z0-9_-]{20,40}", ["sk.eyJ"], "MAPBOX_TOKEN",
         lambda: "sk." + b64u('{"u":"' + R(LOWN, 10) + '","a":"' + R(AN, 25) + '"}') + "." + R(AN, 22), end=END)
rule("algolia-admin-key", "Algolia admin API key assigned to an Algolia name.",
     r"""(?i)algolia[\w.-]{0,20}(?:admin|api|write)[\w.-]{0,10}key["']?\s*(?:[:=]|=>)\s*["']?(?P<value>[a-f0-9]{32})\b""", ["algolia"], "high", "high", "ALGOLIA_KEY",
     pos=[f"ALGOLIA_ADMIN_KEY=«{R(HEX,32)}»"], neg=["ALGOLIA_ADMIN_KEY=${ALGOLIA_ADMIN_KEY}"])
rule("cloudflare-api-token", "Cloudflare API token or global API key assigned to a Cloudflare name.",
     r"""(?i)cloudflare[\w.-]{0,20}(?:token|key)["']?\s*(?:[:=]|=>)\s*["']?(?P<value>[A-Za-z0-9_-]{40}|[a-f0-9]{37})\b""", ["cloudflare"], "high", "high", "CLOUDFLARE_TOKEN",
     pos=[f"CLOUDFLARE_API_TOKEN=«{R(AN,40)}»"], neg=["CLOUDFLARE_API_TOKEN=<token>"], min_entropy=3.5)
prefixed("cloudflare-origin-ca-key", "Cloudflare Origin CA key.", r"v1\.0-", r"[a-f0-9]{24}-[a-f0-9]{146}", ["v1.0-"], "CLOUDFLARE_CA_KEY", lambda: f"v1.0-{R(HEX,24)}-{R(HEX,146)}")
rule("okta-api-token", "Okta API token assigned to an Okta name.",
     r"""(?i)okta[\w.-]{0,20}(?:token|key)["']?\s*(?:[:=]|=>)\s*["']?(?P<value>00[A-Za-z0-9_-]{40})\b""", ["okta"], "high", "high", "OKTA_TOKEN",
     pos=[f"OKTA_API_TOKEN=«00{R(AN,40)}»"], neg=["OKTA_API_TOKEN=00xxxxxxxxxxxxxxxxxx"])
rule("twilio-api-key", "Twilio API key SID near a Twilio name.",
     r"""(?i)twilio.{0,60}?\b(?P<value>SK[0-9a-fA-F]{32})\b""", ["twilio"], "high", "medium", "TWILIO_KEY",
     pos=[f"TWILIO_API_KEY=«SK{R(HEX,32)}»"], neg=["TWILIO_API_KEY=SKxxxxxxxx"], window_after=200)
rule("twilio-auth-token", "Twilio auth token assigned to a Twilio name.",
     r"""(?i)twilio[\w.-]{0,20}(?:auth|token|secret)[\w.-]{0,10}["']?\s*(?:[:=]|=>)\s*["']?(?P<value>[0-9a-f]{32})\b""", ["twilio"], "high", "high", "TWILIO_TOKEN",
     pos=[f"TWILIO_AUTH_TOKEN=«{R(HEX,32)}»"], neg=["TWILIO_AUTH_TOKEN=your_auth_token"])
prefixed("sendgrid-api-key", "SendGrid API key.", r"SG\.", r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", ["SG."], "SENDGRID_API_KEY", lambda: f"SG.{R(AN,22)}.{R(AN,43)}", end=END)
prefixed("mailgun-api-key", "Mailgun private API key.", r"key-", r"[0-9a-f]{32}", ["key-"], "MAILGUN_API_KEY", lambda: "key-" + R(HEX, 32), confidence="medium")
prefixed("mailchimp-api-key", "Mailchimp API key.", r"", r"[0-9a-f]{32}-us[0-9]{1,2}", ["-us"], "MAILCHIMP_API_KEY", lambda: R(HEX, 32) + "-us" + str(rng.randint(1, 21)))
prefixed("brevo-api-key", "Brevo (Sendinblue) API key.", r"xkeysib-", r"[a-f0-9]{64}-[A-Za-z0-9]{16}", ["xkeysib-"], "BREVO_API_KEY", lambda: f"xkeysib-{R(HEX,64)}-{R(AN,16)}")
prefixed("mailersend-api-token", "MailerSend API token.", r"mlsn\.", r"[a-f0-9]{64}", ["mlsn."], "MAILERSEND_TOKEN", lambda: "mlsn." + R(HEX, 64))
prefixed("resend-api-key", "Resend API key.", r"re_", r"[A-Za-z0-9]{8}_[A-Za-z0-9]{24}", ["re_"], "RESEND_API_KEY", lambda: f"re_{R(AN,8)}_{R(AN,24)}")
prefixed("telegram-bot-token", "Telegram bot token.", r"[0-9]{8,10}:AA", r"[A-Za-z0-9_-]{33}", [":AA"], "TELEGRAM_BOT_TOKEN",
         lambda: f"{R(string.digits,10)}:AA{R(AN,33)}", end=END)
rule("discord-bot-token", "Discord bot token near a Discord name.",
     r"""(?i)discord.{0,60}?\b(?P<value>[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38})""", ["discord"], "high", "high", "DISCORD_TOKEN",
     pos=[f"DISCORD_BOT_TOKEN=«M{R(AN,25)}.{R(AN,6)}.{R(AN,38)}»"], neg=["DISCORD_BOT_TOKEN=<token>"], window_after=200)
rule("discord-webhook-url", "Discord webhook URL.",
     r"(?P<value>https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_-]{60,70})", ["discord.com/api/webhooks", "discordapp.com/api/webhooks"],
     "high", "high", "DISCORD_WEBHOOK", pos=[f"«https://discord.com/api/webhooks/{R(string.digits,18)}/{R(AN,68)}»"], neg=["https://discord.com/api/webhooks/123/abc"], window_before=30)
rule("teams-webhook-url", "Microsoft Teams incoming webhook URL.",
     r"(?P<value>https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/[0-9a-f-]{36}@[0-9a-f-]{36}/IncomingWebhook/[0-9a-f]{32}/[0-9a-f-]{36}(?:/[A-Za-z0-9_-]{40,})?)",
     ["webhook.office.com"], "high", "high", "TEAMS_WEBHOOK",
     pos=[f"«https://corp.webhook.office.com/webhookb2/{R(HEX,8)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,12)}@{R(HEX,8)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,12)}/IncomingWebhook/{R(HEX,32)}/{R(HEX,8)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,4)}-{R(HEX,12)}»"],
     neg=["https://corp.webhook.office.com/webhookb2/"], window_before=60)
prefixed("twitter-bearer-token", "Twitter / X API bearer token.", r"AAAAAAAAAAAAAAAAAAAAA", r"[A-Za-z0-9%]{80,120}", ["AAAAAAAAAAAAAAAAAAAAA"], "TWITTER_BEARER_TOKEN",
         lambda: "AAAAAAAAAAAAAAAAAAAAA" + R(AN, 90), start="")
prefixed("dropbox-access-token", "Dropbox short-lived access token.", r"sl\.", r"[A-Za-z0-9_-]{130,160}", ["sl."], "DROPBOX_TOKEN", lambda: "sl." + R(AN, 138), end=END)
prefixed("adafruit-io-key", "Adafruit IO key.", r"aio_", r"[A-Za-z0-9]{28}", ["aio_"], "ADAFRUIT_IO_KEY", lambda: "aio_" + R(AN, 28), severity="medium")
prefixed("duffel-api-token", "Duffel API token.", r"duffel_(?:test|live)_", r"[A-Za-z0-9_=-]{43}", ["duffel_"], "DUFFEL_TOKEN", lambda: "duffel_live_" + R(AN, 43), end=END)
prefixed("frameio-api-token", "Frame.io API token.", r"fio-u-", r"[A-Za-z0-9_=-]{64}", ["fio-u-"], "FRAMEIO_TOKEN", lambda: "fio-u-" + R(AN, 64), end=END)
prefixed("scalingo-api-token", "Scalingo API token.", r"tk-us-", r"[A-Za-z0-9_-]{48}", ["tk-us-"], "SCALINGO_TOKEN", lambda: "tk-us-" + R(AN, 48), end=END)
prefixed("shopify-access-token", "Shopify Admin API access token.", r"shpat_", r"[a-fA-F0-9]{32}", ["shpat_"], "SHOPIFY_TOKEN", lambda: "shpat_" + R(HEX, 32), tags=["shopify"])
prefixed("shopify-custom-app-token", "Shopify custom app access token.", r"shpca_", r"[a-fA-F0-9]{32}", ["shpca_"], "SHOPIFY_TOKEN", lambda: "shpca_" + R(HEX, 32), tags=["shopify"])
prefixed("shopify-private-app-token", "Shopify private app password.", r"shppa_", r"[a-fA-F0-9]{32}", ["shppa_"], "SHOPIFY_TOKEN", lambda: "shppa_" + R(HEX, 32), tags=["shopify"])
prefixed("shopify-shared-secret", "Shopify app shared secret.", r"shpss_", r"[a-fA-F0-9]{32}", ["shpss_"], "SHOPIFY_SECRET", lambda: "shpss_" + R(HEX, 32), tags=["shopify"])
prefixed("woocommerce-consumer-secret", "WooCommerce REST API consumer secret.", r"cs_", r"[a-f0-9]{40}", ["cs_"], "WOOCOMMERCE_SECRET", lambda: "cs_" + R(HEX, 40), confidence="medium")

# ---------------------------------------------------------------- Keys and certificates
def pem_body(lines=6):
    return "\n".join(R(B64, 64) for _ in range(lines))
rule("private-key", "PEM private key (PKCS#1 RSA, PKCS#8, EC, DSA, encrypted).",
     r"(?P<value>-----BEGIN (?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----(?:\\[rn]|[\s])+(?:[A-Za-z0-9+/=:, -]+(?:\\[rn]|[\s])+){1,400}?-----END (?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY-----)",
     ["PRIVATE KEY-----"], "critical", "high", "PRIVATE_KEY",
     pos=["«-----BEGIN RSA PRIVATE KEY-----\n" + pem_body() + "\n-----END RSA PRIVATE KEY-----»",
          '"key": "«-----BEGIN PRIVATE KEY-----\\n' + R(B64, 64) + "\\n" + R(B64, 64) + '\\n-----END PRIVATE KEY-----»"'],
     neg=["-----BEGIN PUBLIC KEY-----\n" + pem_body(2) + "\n-----END PUBLIC KEY-----", "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
          "-----BEGIN PRIVATE KEY-----\n<your key here>\n-----END PRIVATE KEY-----"],
     window_before=48, window_after=20000, tags=["keys"])
rule("openssh-private-key", "OpenSSH private key.",
     r"(?P<value>-----BEGIN OPENSSH PRIVATE KEY-----(?:\\[rn]|[\s])+(?:[A-Za-z0-9+/=]+(?:\\[rn]|[\s])+){1,400}?-----END OPENSSH PRIVATE KEY-----)",
     ["BEGIN OPENSSH PRIVATE KEY"], "critical", "high", "SSH_PRIVATE_KEY",
     pos=["«-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA" + R(B64, 46) + "\n" + pem_body(4) + "\n-----END OPENSSH PRIVATE KEY-----»"],
     neg=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + R(B64, 43) + " user@host", "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n-----END OPENSSH PRIVATE KEY-----"],
     window_before=16, window_after=20000, tags=["keys"])
rule("pgp-private-key", "PGP/GPG private key block.",
     r"(?P<value>-----BEGIN PGP PRIVATE KEY BLOCK-----(?:\\[rn]|[\s])+(?:[A-Za-z0-9+/=:. -]*(?:\\[rn]|[\s])+){2,1000}?-----END PGP PRIVATE KEY BLOCK-----)",
     ["BEGIN PGP PRIVATE KEY BLOCK"], "critical", "high", "PGP_PRIVATE_KEY",
     pos=["«-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQdGBF" + R(B64, 58) + "\n" + pem_body(5) + "\n=" + R(B64, 4) + "\n-----END PGP PRIVATE KEY BLOCK-----»"],
     neg=["-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + pem_body(2) + "\n-----END PGP PUBLIC KEY BLOCK-----"],
     window_before=16, window_after=40000, tags=["keys"])
rule("putty-private-key", "PuTTY private key file (the private lines).",
     r"PuTTY-User-Key-File-\d: [a-z0-9-]+(?:\r?\n[^\n]*){2,12}?\r?\nPrivate-Lines: \d+\r?\n(?P<value>(?:[A-Za-z0-9+/=]{1,64}\r?\n){1,40})",
     ["PuTTY-User-Key-File-"], "critical", "high", "SSH_PRIVATE_KEY",
     pos=["PuTTY-User-Key-File-3: ssh-rsa\nEncryption: none\nComment: k\nPublic-Lines: 2\n" + R(B64, 64) + "\n" + R(B64, 20) + "\nPrivate-Lines: 2\n«" + R(B64, 64) + "\n" + R(B64, 40) + "\n»Private-MAC: " + R(HEX, 64)],
     neg=["PuTTY-User-Key-File-3: ssh-rsa"], window_before=8, window_after=12000, tags=["keys"])
prefixed("age-secret-key", "age encryption secret key.", r"AGE-SECRET-KEY-1", r"[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", ["AGE-SECRET-KEY-1"], "AGE_SECRET_KEY",
         lambda: "AGE-SECRET-KEY-1" + R("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58), severity="critical", tags=["keys"])
rule("kubeconfig-client-key", "Client private key embedded in a kubeconfig (`client-key-data`).",
     r"""client-key-data:\s*["']?(?P<value>[A-Za-z0-9+/]{100,20000}={0,2})""", ["client-key-data"], "critical", "high", "KUBE_CLIENT_KEY",
     pos=["    client-key-data: «" + b64("-----BEGIN RSA PRIVATE KEY-----\n" + R(B64, 64) + "\n" + R(B64, 30) + "\n-----END RSA PRIVATE KEY-----\n") + "»"],
     neg=["client-key-data: <base64>", "client-key-data: REDACTED"], window_after=24000, tags=["keys"])
rule("jwt", "JSON Web Token (header and payload decode to JSON; signature present).",
     r"\b(?P<value>eyJ[A-Za-z0-9_-]{8,4000}\.eyJ[A-Za-z0-9_-]{8,8000}\.[A-Za-z0-9_-]{16,2000})", ["eyJ"], "high", "high", "JWT",
     pos=["Authorization: Bearer «" + b64u('{"alg":"HS256","typ":"JWT"}') + "." + b64u('{"sub":"' + R(AN, 12) + '","iat":1700000000}') + "." + R(AN, 43) + "»"],
     neg=["eyJhbGciOi.eyJzdWIiOi.short", "eyJ" + R(AN, 20) + ".eyJ" + R(AN, 20) + "." + R(AN, 30)],
     validator="jwt", window_before=4, window_after=14000)
rule("laravel-app-key", "Laravel APP_KEY (base64 32-byte encryption key).",
     r"""APP_KEY\s*=\s*["']?base64:(?P<value>[A-Za-z0-9+/]{43}=)""", ["APP_KEY"], "high", "high", "APP_KEY",
     pos=[f"APP_KEY=base64:«{R(B64,43)}=»"], neg=["APP_KEY=", "APP_KEY=base64:"])

# ---------------------------------------------------------------- Connection strings and URLs
def url_rule(id, scheme_re, kws, desc, scheme_example):
    rule(id, desc,
         rf"(?i)\b(?:{scheme_re})://[^\s:@/?#\"'<>]{{1,128}}:(?P<value>[^\s@/?#\"'<>]{{3,256}})@[A-Za-z0-9._-]+",
         kws, "critical", "high", "DATABASE_PASSWORD" if "url" in id else "URL_PASSWORD",
         pos=[f"DATABASE_URL={scheme_example}://app:«{R(AN,18)}»@db.internal:5432/prod", f"«{R(AN,12)}»".join([f"{scheme_example}://admin:", "@10.0.0.5/x"])],
         neg=[f"{scheme_example}://user:password@localhost/db", f"{scheme_example}://user:${{DB_PASSWORD}}@host/db", f"{scheme_example}://host/db",
              f"{scheme_example}://user:<password>@host"],
         window_before=24, window_after=420, tags=["database"])
url_rule("postgres-url", r"postgres(?:ql)?(?:\+[a-z0-9]+)?", ["postgres"], "PostgreSQL connection URL with an embedded password.", "postgres")
url_rule("mysql-url", r"mysql(?:\+[a-z0-9]+)?|mariadb", ["mysql", "mariadb"], "MySQL/MariaDB connection URL with an embedded password.", "mysql")
url_rule("mongodb-url", r"mongodb(?:\+srv)?", ["mongodb"], "MongoDB connection URL with an embedded password.", "mongodb+srv")
url_rule("redis-url", r"rediss?", ["redis"], "Redis connection URL with an embedded password.", "redis")
url_rule("amqp-url", r"amqps?", ["amqp"], "AMQP (RabbitMQ) connection URL with an embedded password.", "amqps")
url_rule("sqlserver-url", r"(?:sqlserver|mssql)", ["sqlserver", "mssql"], "SQL Server connection URL with an embedded password.", "mssql")
url_rule("ldap-url", r"ldaps?", ["ldap"], "LDAP URL with an embedded bind password.", "ldaps")
rule("url-basic-auth", "Credentials embedded in a URL (`scheme://user:password@host`).",
     r"\b[a-z][a-z0-9+.-]{1,20}://[^\s:@/?#\"'<>]{1,128}:(?P<value>[^\s@/?#\"'<>]{3,256})@[A-Za-z0-9._-]+",
     ["://"], "high", "medium", "URL_PASSWORD",
     pos=[f"git clone https://deploy:«{R(AN,20)}»@git.corp.io/repo.git", f"proxy = http://u:«{R(AN,14)}»@proxy.corp:3128"],
     neg=["https://user:pass@host", "https://example.com/a:b@c", "http://$USER:$PASS@host", "https://user:${TOKEN}@github.com"],
     window_before=32, window_after=420, generic=True)
rule("jdbc-password", "Password parameter in a JDBC URL.",
     r"""(?i)jdbc:[a-z0-9]+:[^\s"'<>]{0,300}?[;?&](?:password|pwd)=(?P<value>[^;&\s"'<>]{3,128})""", ["jdbc:"], "critical", "high", "DATABASE_PASSWORD",
     pos=[f"jdbc:sqlserver://db.corp:1433;databaseName=app;user=sa;password=«{R(AN,16)}»"], neg=["jdbc:mysql://host/db?user=a&password=${DB_PASS}"], window_before=8, window_after=420, tags=["database"])
rule("adonet-connection-password", "Password in an ADO.NET / ODBC connection string.",
     r"""(?i)(?:Server|Data Source|Host)=[^;"'\n]{1,200};(?:[^;"'\n]{1,200};){0,10}?\s*(?:Password|Pwd)=(?P<value>[^;"'\n]{3,128})""",
     ["Data Source=", "Server=", "Host="], "critical", "high", "DATABASE_PASSWORD",
     pos=[f"Server=tcp:db.corp,1433;Database=app;User ID=svc;Password=«{R(AN,16)}»;Encrypt=true"], neg=["Server=db;User ID=sa;Password=<password>;"], window_before=8, window_after=900, tags=["database"])
rule("netrc-password", "Password in a .netrc entry.",
     r"""(?i)\bmachine\s+\S{1,200}\s+login\s+\S{1,200}\s+password\s+(?P<value>[^\s]{3,200})""", ["machine"], "critical", "high", "NETRC_PASSWORD",
     pos=[f"machine api.corp.io login ci password «{R(AN,20)}»"], neg=["machine api.corp.io login ci password ${NETRC_PASSWORD}"], window_before=8, window_after=600)

# ---------------------------------------------------------------- HTTP auth headers
rule("http-basic-auth-header", "HTTP Basic credentials in an Authorization header.",
     r"""(?i)authorization["']?\s*[:=]\s*["']?basic\s+(?P<value>[A-Za-z0-9+/]{8,1024}={0,2})""", ["basic "], "high", "high", "BASIC_AUTH",
     pos=["Authorization: Basic «" + b64("svc-ci:" + R(AN, 18)) + "»"], neg=["Authorization: Basic " + b64("user:password"), "Authorization: Basic <credentials>"],
     validator="basic_auth_b64", window_before=40, window_after=1100)
rule("http-bearer-token", "Opaque bearer token in an Authorization header (high entropy).",
     r"""(?i)authorization["']?\s*[:=]\s*["']?bearer\s+(?P<value>[A-Za-z0-9_\-.~+/=]{20,2048})""", ["bearer "], "high", "medium", "BEARER_TOKEN",
     pos=[f"Authorization: Bearer «{R(AN,40)}»"], neg=["Authorization: Bearer ${TOKEN}", "Authorization: Bearer <token>", "Authorization: Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaa"],
     min_entropy=3.5, generic=True, window_before=40, window_after=2100)

# ---------------------------------------------------------------- Generic assignments
NAME_TAIL = r"""[\w.-]{0,30}["']?\s*(?:=|:=|:|=>|\s*=\s*)\s*(?:[a-z]{1,5}["'`]|["'`])?"""
def generic(id, names_re, kws, label, desc, name_example):
    rule(id, desc,
         rf"""(?i){names_re}{NAME_TAIL}(?P<value>[^\s"'`;,()\]{{}}<>\\]{{8,200}})""",
         kws, "high", "low", label,
         pos=[f'{name_example} = "«{R(AN,12)}!{R(AN,5)}»"', f"{name_example.upper()}=«{R(AN,24)}»"],
         neg=[f"{name_example} = get_{name_example}()", f'{name_example} = "${{{name_example.upper()}}}"', f"{name_example}: String,",
              f"let {name_example} = self.{name_example}.clone();", f'{name_example} = "changeme"', f'{name_example} = "550e8400-e29b-41d4-a716-446655440000"',
              f"{name_example.upper()}=your-{name_example}-here", f'{name_example} = "{name_example}_file_path"'],
         validator="generic_secret", min_entropy=3.0, generic=True, window_before=4, window_after=300)
generic("generic-password", r"(?:password|passwd|passphrase|pwd)", ["password", "passwd", "passphrase", "pwd"], "PASSWORD",
        "Password assigned in code or config (quoted, or in env/ini/yaml form).", "db_password")
generic("generic-secret", r"(?:secret|client_secret|secret_key)", ["secret"], "SECRET", "Secret assigned in code or config.", "client_secret")
generic("generic-token", r"(?:token|access_token|auth_token)", ["token"], "TOKEN", "Token assigned in code or config.", "auth_token")
generic("generic-api-key", r"(?:api[_-]?key|apikey|access[_-]?key|private[_-]?key)", ["api_key", "apikey", "api-key", "access_key", "accesskey", "access-key", "private_key"],
        "API_KEY", "API key assigned in code or config.", "api_key")

# ---------------------------------------------------------------- output
def tq(s):
    assert "'''" not in s
    s = re.sub(r"\{(\d+),(\d+)\}", lambda m: "{%s,}" % m.group(1) if int(m.group(2)) >= 300 else m.group(0), s)
    return "'''" + s + "'''"

def ts(s):
    return json.dumps(s, ensure_ascii=False)

out = ["# Secret rules: generated by crates/airlock-detect/tools/gen_secrets.py (edit the generator, not this file).",
       "# In examples, «…» marks the exact span the finding must cover. Example values are random strings in each",
       "# provider's format (valid checksums where the format has one); none is a live credential.", ""]
ids = set()
for r in rules:
    assert r["id"] not in ids, r["id"]
    ids.add(r["id"])
    out.append("[[rule]]")
    out.append(f"id = {ts(r['id'])}")
    out.append('category = "secret"')
    out.append(f"description = {ts(r['description'])}")
    out.append(f"pattern = {tq(r['pattern'])}")
    out.append(f"keywords = [{', '.join(ts(k) for k in r['keywords'])}]")
    if r["validator"]:
        out.append(f"validator = {ts(r['validator'])}")
    out.append(f"severity = {ts(r['severity'])}")
    out.append(f"confidence = {ts(r['confidence'])}")
    if r["label"]:
        out.append(f"label = {ts(r['label'])}")
    if r["min_entropy"] is not None:
        out.append(f"min_entropy = {r['min_entropy']}")
    if r["window_before"] is not None:
        out.append(f"window_before = {r['window_before']}")
    if r["window_after"] is not None:
        out.append(f"window_after = {r['window_after']}")
    if r["generic"]:
        out.append("generic = true")
    if r["tags"]:
        out.append(f"tags = [{', '.join(ts(t) for t in r['tags'])}]")
    out.append("examples = [")
    for e in r["examples"]:
        out.append(f"  {ts(e)},")
    out.append("]")
    out.append("negative_examples = [")
    for e in r["negative_examples"]:
        out.append(f"  {ts(e)},")
    out.append("]")
    if r["references"]:
        out.append(f"references = [{', '.join(ts(x) for x in r['references'])}]")
    out.append("")
open("rules/secrets.toml", "w").write("\n".join(out))
print(len(rules), "rules", file=sys.stderr)
