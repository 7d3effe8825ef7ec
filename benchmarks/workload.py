"""The benchmark's inputs: a campaign, recipient lists and the peer's equivalent template.

The campaign starts from `newsletter init` (so it is what a user gets) and then
gets a heavier layout: a ~10 KB HTML newsletter whose `<style>` block holds ~50
rules, all of which match something, because premailer's cost grows with rules
times matching elements and a template full of dead rules would flatter us.

mailmerge gets the same words and the same markup from the same source text, with
the campaign's fields already filled in (it has no front matter) and the CSS left
in `<style>` (it does not inline); it has no text part, which it cannot make.
"""

from __future__ import annotations

import csv
import html
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ~50 rules, each matching an element of the layout below; one @media block for phones,
# which premailer must leave in <style>.
STYLE = """
body { margin: 0; padding: 0; width: 100%; background-color: #eef1f5; color: #1f2933;
  font-family: -apple-system, "Segoe UI", Roboto, Arial, sans-serif; font-size: 16px;
  line-height: 1.6; }
table { border-collapse: collapse; }
td { font-family: -apple-system, "Segoe UI", Roboto, Arial, sans-serif; vertical-align: top; }
img { border: 0; outline: none; text-decoration: none; display: block; }
a { color: #1a5fa8; text-decoration: underline; }
p { margin: 0 0 16px 0; }
h1 { margin: 0 0 16px 0; color: #1f3a5f; font-size: 26px; line-height: 1.3; font-weight: bold; }
h2 { margin: 24px 0 12px 0; color: #1f3a5f; font-size: 19px; line-height: 1.35; }
h3 { margin: 0 0 8px 0; color: #1f3a5f; font-size: 16px; line-height: 1.4; }
ul { margin: 0 0 16px 0; padding-left: 24px; }
li { margin: 0 0 6px 0; }
em { font-style: italic; }
strong { font-weight: bold; }
.preheader { display: none; visibility: hidden; opacity: 0; color: transparent; height: 0;
  width: 0; max-height: 0; max-width: 0; overflow: hidden; font-size: 1px; line-height: 1px; }
.wrapper { width: 100%; background-color: #eef1f5; }
.wrapper-cell { padding: 24px 12px; }
.container { width: 100%; max-width: 640px; margin: 0 auto; }
.topbar { padding: 0 0 12px 0; text-align: center; font-size: 12px; color: #6b7785; }
.topbar a { color: #6b7785; }
.header { padding: 20px 32px; background-color: #1f3a5f; color: #ffffff; font-size: 15px;
  font-weight: bold; letter-spacing: 0.04em; text-transform: uppercase; }
.header-note { display: block; margin-top: 2px; color: #b9c9dd; font-size: 12px;
  font-weight: normal; }
.content { padding: 32px; background-color: #ffffff; }
.greeting { margin: 0 0 12px 0; font-size: 17px; }
.intro { color: #3e4c59; }
.book { width: 100%; margin: 8px 0 28px 0; background-color: #f5f8fc; border: 1px solid #d6e0ec;
  border-left: 4px solid #1a5fa8; }
.book-cell { padding: 20px 24px; }
.eyebrow { margin: 0 0 6px 0; color: #1a5fa8; font-size: 12px; font-weight: bold;
  letter-spacing: 0.08em; text-transform: uppercase; }
.details { width: 100%; font-size: 14px; line-height: 1.5; }
.details th { width: 96px; padding: 6px 12px 6px 0; border-top: 1px solid #d6e0ec; color: #52606d;
  font-weight: bold; text-align: left; vertical-align: top; }
.details td { padding: 6px 0; border-top: 1px solid #d6e0ec; color: #1f2933; }
.body { color: #1f2933; }
.body p { margin: 0 0 14px 0; }
.body ul { padding-left: 22px; }
.section { margin: 28px 0 0 0; padding-top: 20px; border-top: 1px solid #e4e7eb; }
.item { width: 100%; margin: 0 0 16px 0; }
.item-date { width: 88px; padding: 2px 12px 0 0; color: #1a5fa8; font-size: 13px;
  font-weight: bold; }
.item-text { padding: 0; font-size: 15px; color: #3e4c59; }
.item-title { margin: 0 0 4px 0; color: #1f2933; font-weight: bold; }
.events { width: 100%; font-size: 14px; border: 1px solid #d6e0ec; }
.events th { padding: 8px 10px; background-color: #f0f4f8; color: #1f3a5f; text-align: left; }
.events td { padding: 8px 10px; border-top: 1px solid #e4e7eb; }
.tag { display: inline-block; padding: 1px 8px; background-color: #e3ecf7; color: #1f3a5f;
  font-size: 11px; border-radius: 10px; }
.quote { margin: 0 0 16px 0; padding: 12px 16px; background-color: #fbfaf5;
  border-left: 3px solid #d9b44a; color: #52606d; font-style: italic; }
.button-table { margin: 28px auto 12px auto; }
.button-cell { background-color: #1a5fa8; border-radius: 6px; text-align: center; }
a.button { display: inline-block; padding: 14px 32px; background-color: #1a5fa8; color: #ffffff;
  font-size: 16px; font-weight: bold; line-height: 1.2; text-decoration: none; border-radius: 6px; }
.fallback { margin: 0 0 28px 0; color: #52606d; font-size: 13px; text-align: center; }
.signature { margin: 28px 0 0 0; padding-top: 20px; border-top: 1px solid #e4e7eb; }
.signature-name { color: #1f3a5f; font-weight: bold; }
.signature-title { color: #52606d; font-size: 14px; }
.footer { padding: 20px 32px 28px 32px; background-color: #f7f8fa; border-top: 1px solid #e4e7eb;
  color: #6b7785; font-size: 12px; line-height: 1.5; }
.footer p { margin: 0 0 8px 0; }
.footer a { color: #6b7785; }
.small { font-size: 11px; color: #9aa5b1; }
@media (max-width: 660px) {
  .wrapper-cell { padding: 0 !important; }
  .content { padding: 24px 20px !important; }
  .header { padding: 16px 20px !important; }
  h1 { font-size: 22px !important; }
  a.button { display: block !important; padding: 14px 20px !important; }
}
"""

NEWS = [
    (
        "12 Mar",
        "Seminar on the Digital Customs Maturity Model",
        "A half-day seminar for teaching staff walks through the maturity model's five levels "
        "and how administrations have used it to plan their own programmes.",
    ),
    (
        "28 Mar",
        "New course module: data exchange between customs authorities",
        "The module covers the legal basis for exchanging customs data across borders, with "
        "case studies from regional economic unions and the WCO data model.",
    ),
]

EVENTS = [
    ("Seminar", "12 March", "Academy, room 214", "Teaching staff"),
    ("Lecture", "6 May", "Regional Training Centre", "Open to all"),
    ("Conference", "24 June", "Academy, main hall", "Researchers and officials"),
]


@dataclass(frozen=True)
class Slots:
    """How one layout names its variables: ours (Jinja over our context) or mailmerge's."""

    name: str
    organization: str
    email: str
    campaign: Callable[[str], str]
    body: str
    subject: str
    preheader: str
    unsubscribe: str


def html_layout(s: Slots) -> str:
    """The newsletter's HTML, with its variables written by `s`; the CSS stays in <style>."""
    news = "".join(
        f"""
              <table role="presentation" class="item" cellpadding="0" cellspacing="0" border="0">
                <tr>
                  <td class="item-date">{date}</td>
                  <td class="item-text">
                    <p class="item-title">{title} <span class="tag">news</span></p>
                    {text}</td>
                </tr>
              </table>"""
        for date, title, text in NEWS
    )
    events = "".join(
        f"""
                <tr><td><strong>{kind}</strong></td><td>{when}</td><td>{where}</td><td>{who}</td></tr>"""
        for kind, when, where, who in EVENTS
    )
    c = s.campaign
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{s.subject}</title>
<style>{STYLE}</style>
</head>
<body>
<span class="preheader">{s.preheader}</span>
<table role="presentation" class="wrapper" width="100%" cellpadding="0" cellspacing="0" border="0">
  <tr>
    <td class="wrapper-cell" align="center">
      <table role="presentation" class="container" width="100%"
        cellpadding="0" cellspacing="0" border="0">
        <tr><td class="topbar">Research announcements for {s.organization}</td></tr>
        <tr>
          <td class="header">{c("publisher")}
            <span class="header-note">Research announcement</span></td>
        </tr>
        <tr>
          <td class="content">
            <p class="greeting">Dear {s.name},</p>
            <p class="intro">I thought this new book might interest you and your colleagues at
              <strong>{s.organization}</strong>.</p>
            <table role="presentation" class="book" width="100%"
              cellpadding="0" cellspacing="0" border="0">
              <tr>
                <td class="book-cell">
                  <p class="eyebrow">New publication</p>
                  <h1>{c("title")}</h1>
                  <table role="presentation" class="details" width="100%"
                    cellpadding="0" cellspacing="0" border="0">
                    <tr><th scope="row">Author</th><td>{c("author")}</td></tr>
                    <tr><th scope="row">Position</th><td>{c("author_title")}</td></tr>
                    <tr><th scope="row">Publisher</th><td>{c("publisher")}</td></tr>
                    <tr><th scope="row">Published</th><td>{c("published")}</td></tr>
                  </table>
                </td>
              </tr>
            </table>
            <div class="body">
{s.body}
            </div>
            <p class="quote">“A practical guide for anyone working on customs cooperation.”</p>
            <div class="section">
              <h2>Also this spring at the Academy</h2>{news}
            </div>
            <div class="section">
              <h3>Events</h3>
              <table role="presentation" class="events" width="100%"
                cellpadding="0" cellspacing="0" border="0">
                <tr><th>What</th><th>When</th><th>Where</th><th>For</th></tr>{events}
              </table>
            </div>
            <table role="presentation" class="button-table" align="center"
              cellpadding="0" cellspacing="0" border="0">
              <tr>
                <td class="button-cell" align="center">
                  <a class="button" href="{c("download_url")}">Download the book (PDF)</a>
                </td>
              </tr>
            </table>
            <p class="fallback">If the button does not work, copy this link into your browser:<br>
              <a href="{c("download_url")}">{c("download_url")}</a></p>
            <p class="signature">Kind regards,<br>
              <span class="signature-name">{c("author")}</span><br>
              <span class="signature-title">{c("author_title")}</span></p>
          </td>
        </tr>
        <tr>
          <td class="footer">
            <p>{c("why")}</p>
            <p>This message was sent to {s.email}.</p>
            <p>{s.unsubscribe}</p>
            <p class="small">{c("publisher")}</p>
          </td>
        </tr>
      </table>
    </td>
  </tr>
</table>
</body>
</html>
"""


OUR_SLOTS = Slots(
    name="{{ recipient.name or 'colleague' }}",
    organization="{{ recipient.organization }}",
    email="{{ recipient.email }}",
    campaign=lambda key: "{{ campaign.%s }}" % key,  # noqa: UP031 (braces stay literal)
    body="{{ campaign.body }}",
    subject="{{ campaign.subject }}",
    preheader="{{ campaign.preheader }}",
    unsubscribe=(
        '{% if unsubscribe_url %}<a href="{{ unsubscribe_url }}">Unsubscribe</a> from these '
        "announcements.{% else %}Reply with the word unsubscribe to stop these.{% endif %}"
    ),
)

TEXT_TEMPLATE = """Dear {{ recipient.name or "colleague" }},

{% filter wordwrap(72, break_long_words=False) -%}
I thought this new book might interest you and your colleagues at {{ recipient.organization }}.
{%- endfilter %}

NEW PUBLICATION
{{ campaign.title }}

Author:     {{ campaign.author }}
Publisher:  {{ campaign.publisher }}
Published:  {{ campaign.published }}

{{ campaign.body_text }}
ALSO THIS SPRING AT THE ACADEMY
{% for date, title, text in news %}
{{ date }}  {{ title }}
{{ text | wordwrap(66, break_long_words=False, wrapstring="\\n       ") }}
{% endfor %}
Download the book: {{ campaign.download_url }}

Kind regards,
{{ campaign.author }}

------------------------------------------------------------------------
{% filter wordwrap(72, break_long_words=False) -%}
{{ campaign.why }} This message was sent to {{ recipient.email }}.
{% if unsubscribe_url %}Unsubscribe: {{ unsubscribe_url }}{% endif %}
{%- endfilter %}
"""

FIRST = ["Anna", "Dmitry", "Elena", "Marie", "John", "Aigerim", "Pierre", "Sofia", "Omar", "Li"]
LAST = ["Petrova", "Sokolov", "Ivanova", "Lefèvre", "Smith", "Nurlanova", "Dubois", "Rossi"]
ORGS = [
    "Example Customs Academy, Department of Customs Law",
    "Eurasian Economic Commission, Customs Cooperation Unit",
    "Example State University, Faculty of Law",
    "WCO Regional Training Centre Exampleville",
    "Ministry of Finance (example), Customs Policy Division",
]


def write_recipients(path: Path, count: int) -> Path:
    """`count` distinct, valid rows at example.org/example.com, some names non-ASCII."""
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["email", "name", "organization"])
        for i in range(count):
            domain = "example.org" if i % 2 else "example.com"
            name = f"{FIRST[i % len(FIRST)]} {LAST[(i // len(FIRST)) % len(LAST)]}"
            writer.writerow([f"reader{i:07d}@{domain}", name, ORGS[i % len(ORGS)]])
    return path


# Russian names for the example campaign's list: 20 x 20 x 2 = 800 distinct names,
# each with the Latin spelling its address is made from.
MALE_FIRST = [
    ("Александр", "aleksandr"),
    ("Дмитрий", "dmitry"),
    ("Сергей", "sergei"),
    ("Андрей", "andrei"),
    ("Алексей", "aleksei"),
    ("Михаил", "mikhail"),
    ("Иван", "ivan"),
    ("Николай", "nikolai"),
    ("Евгений", "evgeny"),
    ("Владимир", "vladimir"),
    ("Павел", "pavel"),
    ("Кирилл", "kirill"),
    ("Максим", "maksim"),
    ("Артём", "artem"),
    ("Юрий", "yuri"),
    ("Олег", "oleg"),
    ("Виктор", "viktor"),
    ("Игорь", "igor"),
    ("Роман", "roman"),
    ("Григорий", "grigory"),
]
FEMALE_FIRST = [
    ("Анна", "anna"),
    ("Елена", "elena"),
    ("Ольга", "olga"),
    ("Наталья", "natalya"),
    ("Татьяна", "tatyana"),
    ("Мария", "maria"),
    ("Ирина", "irina"),
    ("Светлана", "svetlana"),
    ("Екатерина", "ekaterina"),
    ("Юлия", "yulia"),
    ("Людмила", "lyudmila"),
    ("Галина", "galina"),
    ("Дарья", "darya"),
    ("Ксения", "ksenia"),
    ("Вера", "vera"),
    ("Надежда", "nadezhda"),
    ("Софья", "sofya"),
    ("Алёна", "alena"),
    ("Марина", "marina"),
    ("Полина", "polina"),
]
# (male form, female form, and the Latin spelling of each)
SURNAMES = [
    ("Иванов", "Иванова", "ivanov", "ivanova"),
    ("Смирнов", "Смирнова", "smirnov", "smirnova"),
    ("Кузнецов", "Кузнецова", "kuznetsov", "kuznetsova"),
    ("Попов", "Попова", "popov", "popova"),
    ("Васильев", "Васильева", "vasiliev", "vasilieva"),
    ("Петров", "Петрова", "petrov", "petrova"),
    ("Соколов", "Соколова", "sokolov", "sokolova"),
    ("Михайлов", "Михайлова", "mikhailov", "mikhailova"),
    ("Новиков", "Новикова", "novikov", "novikova"),
    ("Фёдоров", "Фёдорова", "fedorov", "fedorova"),
    ("Морозов", "Морозова", "morozov", "morozova"),
    ("Волков", "Волкова", "volkov", "volkova"),
    ("Лебедев", "Лебедева", "lebedev", "lebedeva"),
    ("Семёнов", "Семёнова", "semenov", "semenova"),
    ("Егоров", "Егорова", "egorov", "egorova"),
    ("Козлов", "Козлова", "kozlov", "kozlova"),
    ("Орлов", "Орлова", "orlov", "orlova"),
    ("Зайцев", "Зайцева", "zaitsev", "zaitseva"),
    ("Белоусов", "Белоусова", "belousov", "belousova"),
    ("Ковалевский", "Ковалевская", "kovalevsky", "kovalevskaya"),
]


def write_russian_recipients(path: Path, count: int) -> Path:
    """`count` rows like recipients.example.csv's, every name Russian in Cyrillic.

    Deterministic; addresses are unique (a serial number after the transliterated
    name) and alternate between example.org and example.com.
    """
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["email", "name", "organization"])
        for i in range(count):
            female = i % 2 == 1
            names = FEMALE_FIRST if female else MALE_FIRST
            first, first_latin = names[(i // 2) % len(names)]
            male, female_form, male_latin, female_latin = SURNAMES[(i // 40) % len(SURNAMES)]
            last, last_latin = (female_form, female_latin) if female else (male, male_latin)
            domain = "example.org" if i % 4 < 2 else "example.com"
            email = f"{first_latin}.{last_latin}.{i:05d}@{domain}"
            writer.writerow([email, f"{first} {last}", ORGS[i % len(ORGS)]])
    return path


def init_campaign(folder: Path, *, python: str = sys.executable) -> Path:
    """`newsletter init` into `folder`: the repository's own example campaign."""
    subprocess.run(
        [python, "-m", "newsletter", "init", str(folder)],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=60,
    )
    return folder


def make_campaign(folder: Path, *, python: str = sys.executable) -> Path:
    """`newsletter init` into `folder`, then swap in the benchmark's templates."""
    init_campaign(folder, python=python)
    templates = folder / "templates"
    shutil.rmtree(templates)
    templates.mkdir()
    (templates / "announcement.html").write_text(html_layout(OUR_SLOTS), encoding="utf-8")
    news = "{% set news = " + repr([list(item) for item in NEWS]) + " %}"
    (templates / "announcement.txt").write_text(news + TEXT_TEMPLATE, encoding="utf-8")
    return folder


def campaign_facts(folder: Path) -> tuple[Mapping[str, Any], str]:
    """The front matter and the body as HTML, read the way `newsletter` reads them."""
    from newsletter.inputs.campaign import load_campaign  # the project's own reader: same body HTML

    campaign = load_campaign(folder)
    fields = dict(campaign.fields)
    fields["subject"] = campaign.subject
    return fields, campaign.body_html


def write_mailmerge_template(path: Path, campaign_folder: Path) -> Path:
    """mailmerge's template: headers, then the same HTML with the campaign's fields filled in."""
    fields, body_html = campaign_facts(campaign_folder)

    def value(key: str) -> str:
        return html.escape(str(fields.get(key, "")))

    slots = Slots(
        name="{{ name or 'colleague' }}",
        organization="{{ organization }}",
        email="{{ email }}",
        campaign=value,
        body=body_html,
        subject=value("subject"),
        preheader=value("preheader"),
        unsubscribe="Reply with the word unsubscribe to stop these.",
    )
    headers = f"TO: {{{{ email }}}}\nSUBJECT: {fields['subject']}\nFROM: {fields['from']}\nCONTENT-TYPE: text/html\n\n"
    path.write_text(headers + html_layout(slots), encoding="utf-8")
    return path


def write_mailmerge_config(path: Path, port: int) -> Path:
    """mailmerge's server INI: no security, no rate limit, our loopback sink."""
    path.write_text(f"[smtp_server]\nhost = 127.0.0.1\nport = {port}\nratelimit = 0\n", encoding="utf-8")
    return path
