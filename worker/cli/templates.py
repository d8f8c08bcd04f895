"""`plangate templates ...` (publish, list, show, search, yank, rate, sign, keygen, trust), `plangate agents
upgrade`, agents installed from a template (`agents add X --template NAME@RANGE`), and `plangate bootstrap`.

The catalogue lives in the ledger's SQLite file (PLANGATE_LEDGER_PATH or --ledger); agents in Redis.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plangate_base import codec
from worker.cli.render import echo, render_fields
from worker.errors import BadRequest
from worker.keys import Keys

if TYPE_CHECKING:  # `plangate --help` registers these commands without pydantic, SQLite or Redis code
    from worker.settings import Settings
    from worker.template_catalogue import TemplateCatalogue
    from worker.template_install import Upgrade

EXIT_OK = 0


def _catalogue(args: argparse.Namespace, settings: Settings) -> TemplateCatalogue:
    from worker.template_catalogue import TemplateCatalogue

    return TemplateCatalogue(Path(getattr(args, "ledger", None) or settings.ledger_path))


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read {path}: {exc}") from exc


def _load(path: str) -> Any:
    from governance.templates import TemplateError, load_template_text

    try:
        return load_template_text(_read(path), path)
    except TemplateError as exc:
        raise BadRequest(str(exc)) from exc


def _parameters(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise BadRequest(f"--param takes NAME=VALUE, not {value!r}")
        out[name.strip()] = text
    return out


def _ratings_line(ratings: dict[str, Any]) -> str:
    if not ratings.get("count"):
        return "no ratings"
    return f"{ratings['mean']}/5 from {ratings['count']} rating{'s' * (ratings['count'] != 1)}"


async def cmd_templates(args: argparse.Namespace, settings: Settings) -> int:
    """Run one `plangate templates` subcommand."""
    command = args.templates_cmd
    if command in ("sign", "keygen"):
        return _offline(args)
    catalogue = _catalogue(args, settings)
    if command == "publish":
        from worker.template_signing import Signature, signature_path

        template = _load(args.file)
        sig_file = Path(args.signature) if args.signature else signature_path(args.file)
        signature = Signature.from_json(_read(str(sig_file))) if sig_file.exists() else None
        unsigned = args.allow_unsigned
        row, new = await catalogue.publish(template, signature, by=args.by, allow_unsigned=unsigned)
        if args.json:
            echo(codec.dumps({**row.listed(), "new": new}))
        else:
            what = "published" if new else "unchanged (this exact content is published already)"
            signer = f"signed by {row.signer}" if row.signer else "unsigned"
            echo(f"{row.name}@{row.version} {what}: {row.hash} ({signer})")
    elif command == "list":
        rows = await catalogue.listing()
        if args.json:
            echo(codec.dumps(rows))
        for r in [] if args.json else rows:
            echo(
                f"{r['name']}@{r['version']}\ttier {r['tier']}\t{_ratings_line(r['ratings'])}\t{r['summary']}"
                f"\t(versions: {', '.join(r['versions'])})"
            )
    elif command == "show":
        shown = await catalogue.show(args.spec)
        if args.json:
            echo(codec.dumps(shown))
        else:
            _render_show(shown)
    elif command == "search":
        hits = await catalogue.search(
            " ".join(args.query), tier=args.tier, side_effect=args.side_effect, limit=args.limit
        )
        if args.json:
            echo(codec.dumps(hits))
        for h in [] if args.json else hits:
            f = h["figures"]
            echo(
                f"{h['name']}@{h['version']}\ttier {h['tier']}\t{_ratings_line(h['ratings'])}\t"
                f"{f['jobs']} jobs\t{h['summary']}"
            )
        if not hits and not args.json:
            sys.stderr.write(f"plangate: no templates match {' '.join(args.query)!r}\n")
    elif command == "yank":
        from worker.template_catalogue import split_spec

        name, version = split_spec(args.spec)
        if not args.undo and not (args.reason or "").strip():
            raise BadRequest("yanking a version needs a reason (--reason)")
        await catalogue.yank(name, version, reason=args.reason or "", undo=args.undo)
        echo(f"{name}@{version} {'restored' if args.undo else 'yanked'}")
    elif command == "rate":
        rated = await catalogue.rate(args.spec, rater=args.by, stars=args.stars, comment=args.comment)
        line = f"{rated['name']}@{rated['version']}: {_ratings_line(rated)}"
        echo(codec.dumps(rated) if args.json else line)
    elif command == "trust":
        key_id = await catalogue.trust(args.publisher, _read(args.public_key), by=args.by)
        echo(f"trusted {args.publisher}'s key {key_id}")
    return EXIT_OK


def _offline(args: argparse.Namespace) -> int:
    """sign and keygen need neither the ledger nor Redis."""
    from worker.template_signing import new_key_pair, sign, signature_path

    if args.templates_cmd == "keygen":
        private, public = new_key_pair()
        key, pub = Path(args.out), Path(f"{args.out}.pub")
        if key.exists():
            raise BadRequest(f"{key} exists already; pick another --out")
        key.touch(mode=0o600)
        key.write_text(private, encoding="ascii")
        pub.write_text(public, encoding="ascii")
        echo(f"private key {key} (keep it secret), public key {pub} (give it to the admins who trust you)")
        return EXIT_OK
    template = _load(args.file)
    signature = sign(template, _read(args.key), args.publisher)
    out = Path(args.out) if args.out else signature_path(args.file)
    out.write_text(signature.to_json() + "\n", encoding="utf-8")
    echo(f"signed {template.name}@{template.version} ({signature.hash}) with key {signature.key_id}: {out}")
    return EXIT_OK


def _counts(counts: dict[str, Any]) -> str:
    """`{"done": 3, "failed": 1}` as `done 3, failed 1` (`(none)` when empty)."""
    return ", ".join(f"{k or '-'} {v}" for k, v in counts.items()) or "(none)"


def _render_show(shown: dict[str, Any]) -> None:
    t = shown["template"]
    yanked = f"  (yanked: {shown['yanked_reason']})" if shown["yanked"] else ""
    echo(f"{shown['name']}@{shown['version']}{yanked}")
    echo(f"  {t['summary']}")
    echo(f"  hash {shown['hash']} · signer {shown['signer'] or '(unsigned)'} · author {t['author'] or '-'}")
    render_fields({"governance": t["governance"], "model": t["model"]}, sys.stdout)
    params = ", ".join(p["name"] for p in t["instructions"]["parameters"]) or "(none)"
    echo(f"instructions.parameters: {params}")
    echo(f"changelog: {t['changelog'] or '(none)'}")
    versions = ", ".join(v["version"] + (" (yanked)" if v["yanked"] else "") for v in shown["versions"])
    echo(f"versions: {versions}")
    r = shown["ratings"]
    echo(f"ratings: {_ratings_line(r)}  stars {' '.join(f'{s}:{n}' for s, n in r['stars'].items())}")
    for c in r["comments"]:
        echo(f"  {c['stars']}/5 {c['rater']}: {c['comment']}")
    figures = {k: _counts(v) if isinstance(v, dict) else v for k, v in shown["figures"].items()}
    render_fields({"figures": figures}, sys.stdout)


# --- agents from templates ----------------------------------------------------------------


async def cmd_agents_add_template(args: argparse.Namespace, settings: Settings) -> int:
    """`plangate agents add X --template NAME@RANGE`: the agent's profile comes from the template."""
    from worker.admin import AgentAdmin
    from worker.redis_conn import text_client
    from worker.template_install import TemplateInstaller

    keys = Keys(settings.key_prefix)
    async with text_client(settings.redis_url) as redis:
        installer = TemplateInstaller(redis, keys, _catalogue(args, settings))
        record, changed = await installer.install(
            args.agent_id,
            args.template,
            tenant_id=args.tenant,
            by=args.by,
            parameters=_parameters(args.param),
            allow_unsigned=args.allow_unsigned,
            keyless=args.keyless,
        )
        key = None
        if args.issue_key:
            key = await AgentAdmin(redis, keys).issue_agent_key(record.agent_id, by=args.by)
    assert record.template is not None
    if args.json:
        echo(codec.dumps({**record.model_dump(mode="json"), **({"agent_key": key} if key else {})}))
        return EXIT_OK
    what = "installed" if changed else "unchanged (the stored record is the same)"
    ref = record.template
    echo(f"agent {record.agent_id} {what} from {ref.name}@{ref.version} ({ref.hash})")
    echo(f"signer {ref.signer or '(unsigned)'}")
    echo(f"tier {record.tier}, tenant {record.tenant_id}, threshold {record.confidence_threshold}")
    if key:
        echo(f"agent key (shown once; jobs must carry it, e.g. PLANGATE_AGENT_KEY): {key}")
    return EXIT_OK


def _render_upgrade(upgrade: Upgrade) -> None:
    shown = upgrade.shown()
    echo(f"{shown['agent_id']}: {shown['template']} {shown['from_version']} -> {shown['to_version']}")
    for change in upgrade.changes:
        echo(f"  {'WIDENS ' if change.widens else '       '}{change.text}")
    if not upgrade.changes:
        echo("         no change to what the agent may do")


async def cmd_agents_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """`plangate agents upgrade X --to V` (or `--all-from TEMPLATE`): the diff first; a widening upgrade
    needs --yes."""
    from worker.redis_conn import text_client
    from worker.template_install import ConfirmationNeeded, TemplateInstaller

    if bool(args.agent_id) == bool(args.all_from):
        raise BadRequest("name one agent, or every agent on a template with --all-from TEMPLATE")
    keys = Keys(settings.key_prefix)
    refused = 0
    async with text_client(settings.redis_url) as redis:
        installer = TemplateInstaller(redis, keys, _catalogue(args, settings))
        agents = [args.agent_id] if args.agent_id else await installer.agents_on(args.all_from)
        if not agents:
            raise BadRequest(f"no agent is installed from {args.all_from}")
        plans = [await installer.plan_upgrade(a, args.to) for a in agents]
        done = []
        for plan in plans:
            if not args.json:
                _render_upgrade(plan)
            if args.dry_run:
                continue
            try:
                unsigned = args.allow_unsigned
                changed = await installer.apply(plan, yes=args.yes, by=args.by, allow_unsigned=unsigned)
            except ConfirmationNeeded as exc:
                refused += 1
                sys.stderr.write(f"plangate: {exc}\n")
                continue
            done.append({**plan.shown(), "applied": changed})
            if not args.json:
                echo(f"  upgraded {plan.agent_id}" if changed else f"  {plan.agent_id} unchanged")
    if args.json:
        echo(codec.dumps(done if not args.dry_run else [p.shown() for p in plans]))
    return 2 if refused else EXIT_OK


async def cmd_bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    """`plangate bootstrap`: the tenant (created or reused), the agent from the template, its key; then how
    to submit. Run again, it changes nothing but the key, which it issues only when asked or missing."""
    from governance.models import TenantRecord
    from worker.admin import AgentAdmin, agent_keys
    from worker.redis_conn import text_client
    from worker.template_install import TemplateInstaller

    keys = Keys(settings.key_prefix)
    async with text_client(settings.redis_url) as redis:
        admin = AgentAdmin(redis, keys)
        tenant_new = await admin.tenants.get(args.tenant) is None
        if tenant_new:  # as `plangate tenants add` saves one
            await admin.tenants.put(TenantRecord(tenant_id=args.tenant, name=args.tenant))
        installer = TemplateInstaller(redis, keys, _catalogue(args, settings))
        agent = await installer.reuse(args.agent, args.template)
        changed = False
        if agent is None:
            unsigned = args.allow_unsigned
            agent, changed = await installer.install(
                args.agent, args.template, tenant_id=args.tenant, by=args.by, allow_unsigned=unsigned
            )
        elif agent.tenant_id != args.tenant:
            raise BadRequest(f"agent {args.agent} belongs to tenant {agent.tenant_id}, not {args.tenant}")
        has_key = await agent_keys(redis, keys).stored(agent.agent_id) is not None
        key = await admin.issue_agent_key(agent.agent_id, by=args.by) if args.new_key or not has_key else None
    assert agent.template is not None
    result = {
        "tenant": args.tenant,
        "tenant_created": tenant_new,
        "agent": agent.agent_id,
        "agent_changed": changed,
        "template": f"{agent.template.name}@{agent.template.version}",
        "agent_key": key,
    }
    if args.json:
        echo(codec.dumps(result))
        return EXIT_OK
    echo(f"tenant {args.tenant}: {'created' if tenant_new else 'exists'}")
    echo(f"agent {agent.agent_id}: {'installed' if changed else 'unchanged'} from {result['template']}")
    if key:
        echo(f"agent key (shown once; stored hashed): {key}")
        shown_key = key
    else:
        echo("agent key: issued before (kept; `--new-key` replaces it)")
        shown_key = "<its key>"
    echo("submit a job:")
    echo(
        f"  PLANGATE_AGENT_KEY={shown_key} plangate submit --agent {agent.agent_id} "
        "--description 'plan the rollout' --wait"
    )
    return EXIT_OK


def _add_common(p: Any, json_text: str | None = None) -> None:
    p.add_argument("--ledger", help="the ledger file holding the catalogue (default PLANGATE_LEDGER_PATH)")
    if json_text:
        p.add_argument("--json", action="store_true", help=f"print {json_text} as JSON, for scripts")


def add_template_commands(sub: Any) -> None:
    """Register `plangate templates ...` and `plangate bootstrap`."""
    templates = sub.add_parser(
        "templates", help="agent templates: versioned, searchable, rated, signed governance profiles"
    )
    tsub = templates.add_subparsers(dest="templates_cmd", required=True)
    p = tsub.add_parser("publish", help="publish a template version from a TOML or JSON file (immutable)")
    p.add_argument("file", help="the template file (TOML, or JSON)")
    p.add_argument("--signature", help="its signature file (default FILE.sig when it exists)")
    p.add_argument("--allow-unsigned", action="store_true", help="publish it without a trusted signature")
    p.add_argument("--by", help="who (default: the current user)")
    _add_common(p, "the stored version")
    p = tsub.add_parser("list", help="every template's latest installable version")
    _add_common(p, "the templates")
    p = tsub.add_parser("show", help="a version: profile, instructions, ratings and figures from the ledger")
    p.add_argument("spec", help="NAME or NAME@RANGE (e.g. llm-planner@^1, llm-planner@1.0.0)")
    _add_common(p, "the version")
    p = tsub.add_parser("search", help="full-text search (bm25) over name, summary, description and tags")
    p.add_argument("query", nargs="+", help="words to look for")
    p.add_argument("--tier", type=int, help="only templates of this tier")
    p.add_argument("--side-effect", help="only templates that allow this side effect")
    p.add_argument("--limit", type=int, default=20, help="at most this many results (default 20)")
    _add_common(p, "the results")
    p = tsub.add_parser("yank", help="hide a version from new installs (agents on it keep it)")
    p.add_argument("spec", help="NAME@VERSION")
    p.add_argument("--reason", help="why (shown to whoever asks for it)")
    p.add_argument("--undo", action="store_true", help="make the version installable again")
    _add_common(p)
    p = tsub.add_parser("rate", help="rate a version 1-5 with a comment (one rating per user)")
    p.add_argument("spec", help="NAME@RANGE")
    p.add_argument("--stars", type=int, required=True, choices=range(1, 6), help="1 to 5")
    p.add_argument("--comment", default="", help="what you found")
    p.add_argument("--by", help="who rates (default: the current user)")
    _add_common(p, "the version's ratings")
    p = tsub.add_parser("sign", help="sign a template file with an Ed25519 key (writes FILE.sig)")
    p.add_argument("file", help="the template file")
    p.add_argument("--key", required=True, help="the publisher's private key (PEM; `templates keygen`)")
    p.add_argument("--publisher", required=True, help="the publisher's name, recorded with the version")
    p.add_argument("--out", help="where to write the signature (default FILE.sig)")
    p = tsub.add_parser("keygen", help="make a publisher key pair (KEY and KEY.pub)")
    p.add_argument("--out", required=True, help="the private key's path; the public key goes to OUT.pub")
    p = tsub.add_parser("trust", help="trust a publisher's public key for publishing and installing")
    p.add_argument("public_key", help="the publisher's public key (PEM)")
    p.add_argument("--publisher", required=True, help="the publisher's name")
    p.add_argument("--by", help="who (default: the current user)")
    _add_common(p)
    templates.set_defaults(run=cmd_templates)

    p = sub.add_parser(
        "bootstrap",
        help="one step to a governed planner: tenant, agent from a template, key, and how to submit",
        description="Create (or reuse) the tenant, install the agent from the template and issue its key; "
        "print how to submit. Run again, it changes nothing (and keeps the key unless --new-key).",
    )
    p.add_argument("--tenant", required=True, help="the tenant's id")
    p.add_argument("--template", required=True, help="NAME@RANGE, e.g. llm-planner@^1")
    p.add_argument("--agent", required=True, help="the agent's id")
    p.add_argument("--new-key", action="store_true", help="issue a new key even when one exists")
    p.add_argument("--allow-unsigned", action="store_true", help="install an unsigned or untrusted template")
    p.add_argument("--by", help="who (default: the current user)")
    _add_common(p, "what was created and the key")
    p.set_defaults(run=cmd_bootstrap)


def add_agent_template_arguments(p: Any) -> None:
    """`agents add`'s template flags."""
    p.add_argument("--template", help="install from a template: NAME@RANGE (e.g. llm-planner@^1)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a template parameter")
    p.add_argument("--allow-unsigned", action="store_true", help="install an unsigned or untrusted template")
    p.add_argument("--ledger", help="the ledger file holding the catalogue (default PLANGATE_LEDGER_PATH)")


def add_agent_upgrade_command(agents: Any) -> None:
    """Register `plangate agents upgrade`."""
    p = agents.add_parser(
        "upgrade",
        help="move an agent (or every agent on a template) to another template version; diff first",
        description="Show what changes, then upgrade. An upgrade that widens what the agent may do (new side "
        "effects, a lower confidence threshold, a higher tier, a lifted forbidden action) needs --yes.",
    )
    p.add_argument("agent_id", nargs="?", help="the agent's id")
    p.add_argument("--all-from", metavar="TEMPLATE", help="every agent installed from this template")
    p.add_argument("--to", required=True, help="a version or range of the agent's template (e.g. 1.3.0, ^1)")
    p.add_argument("--yes", action="store_true", help="confirm an upgrade that widens what the agent may do")
    p.add_argument("--dry-run", action="store_true", help="show the diff only")
    p.add_argument("--allow-unsigned", action="store_true", help="install an unsigned or untrusted version")
    p.add_argument("--by", help="who (default: the current user)")
    _add_common(p, "the upgrades")
    p.set_defaults(run=cmd_agents_upgrade)
