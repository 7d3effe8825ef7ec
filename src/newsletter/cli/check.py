"""`newsletter check`: everything that can be checked without sending."""

from __future__ import annotations

import sys

import click
from rich.table import Table
from rich.text import Text

from newsletter.cli.base import command, load, reported, run, with_example_list
from newsletter.cli.output import destination, err, out, print_preflight
from newsletter.errors import EXIT_INPUT
from newsletter.inputs.folder import CampaignFolder
from newsletter.sizes import human_size


@command(short_help="Find every problem before anything is sent: settings, list, templates.")
@click.option(
    "--smtp",
    "ask_relay",
    is_flag=True,
    help="Also connect to the relay (TLS, login) to read its message size limit; sends nothing.",
)
@click.option("--dns", "ask_dns", is_flag=True, help="Also read the From domain's SPF, DKIM and DMARC records.")
@click.option(
    "--dns-server", metavar="HOST[:PORT]", help="With --dns: ask this DNS server (an IP address), not the system's."
)
def check(source: CampaignFolder, ask_relay: bool, ask_dns: bool, dns_server: str | None) -> None:
    """Check everything that can be checked without sending: settings, list, templates."""
    source, _ = with_example_list(source)
    if dns_server is not None:
        from newsletter.checks.dns import parse_server

        try:
            parse_server(dns_server)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--dns-server") from None
    with reported():
        project = load(source)
        result = run.check(project, ask_relay=ask_relay, dns=ask_dns or dns_server is not None, dns_server=dns_server)
    report = result.report
    print_preflight(report, project.recipients.path.name)
    if result.refusal is not None and not report.template_errors:
        err.print(result.refusal)
    for finding in result.findings:
        style = {"error": "bold red", "warning": "yellow"}.get(finding.level, "cyan")
        err.print(Text(f"{finding.level}: ", style=style) + Text(str(finding)))
    table = Table(show_header=False, box=None)
    table.add_row("campaign", f"{project.campaign.id} ({project.campaign.path.name})")
    table.add_row(
        "recipients", f"{report.valid} valid, {report.invalid_count} invalid, {report.duplicate_count} duplicate"
    )
    table.add_row("sender", project.builder.sender.address)
    table.add_row("delivery", destination(project))
    if report.largest_html:  # nothing was rendered when a template failed
        table.add_row("largest HTML", human_size(report.largest_html))
    if report.largest_message:
        table.add_row("largest message", human_size(report.largest_message))
    if ask_relay and project.settings.smtp is not None and not any(f.code == "smtp-connect" for f in result.findings):
        table.add_row("relay login", result.relay_login or "none (no SMTP_USERNAME)")
    if result.relay_size:
        table.add_row("relay accepts", f"{human_size(result.relay_size)} (SIZE)")
    out.print(table)
    if not result.ok:
        sys.exit(EXIT_INPUT)
    passed = "All checks passed" if not report.invalid_count else "Checks passed for the valid rows"
    warned = sum(1 for finding in result.findings if finding.level != "info")
    out.print(f"{passed}, with {warned} warning(s) above." if warned else f"{passed}.")
