"""Load a deterministic demo data set with COPY.

    python manage.py seed_demo --rows 200000 --members 2000 --seed 42 [--if-empty]

The same arguments always produce byte-identical data: every value comes from
random.Random(seed) or from the row number, never from the clock. Rows are
generated and sent in chunks, so a million rows take little memory. Table and
column names are read from the models' _meta, so the command loads the same
data under every release, whatever the tables and columns are called.
"""

import datetime
import random
import time
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from members.models import Member

from unified_db.models import MEMBER_FIELD, PersonLink

# Rows per COPY write: big enough that per-call overhead vanishes, small
# enough that a chunk of text stays a few MB.
CHUNK_ROWS = 10_000
PROGRESS_EVERY = 100_000
SHARE_WITH_MEMBER = 0.85
EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)

FIRST_NAMES = (
    "Abdul",
    "Aisha",
    "Amina",
    "Bai",
    "Datu",
    "Fatima",
    "Hassan",
    "Ibrahim",
    "Jamal",
    "Khalid",
    "Laila",
    "Maria",
    "Mohammad",
    "Nasser",
    "Noraida",
    "Omar",
    "Rahima",
    "Salma",
    "Sittie",
    "Yusuf",
    "Zainab",
    "Jose",
    "Ana",
    "Rosa",
    "Ramon",
)
LAST_NAMES = (
    "Abubakar",
    "Adiong",
    "Alonto",
    "Ampatuan",
    "Balindong",
    "Dimaporo",
    "Guiani",
    "Hataman",
    "Jaafar",
    "Lucman",
    "Macarambon",
    "Mangudadatu",
    "Pangandaman",
    "Sinsuat",
    "Tan",
    "Usman",
    "Santos",
    "Reyes",
    "Cruz",
    "Garcia",
)
# (province, municipalities) of the Bangsamoro region.
PLACES = (
    ("Lanao del Sur", ("Marawi City", "Balindong", "Malabang", "Wao", "Tamparan")),
    ("Maguindanao del Norte", ("Cotabato City", "Datu Odin Sinsuat", "Parang", "Sultan Kudarat")),
    ("Maguindanao del Sur", ("Buluan", "Datu Piang", "Shariff Aguak", "Talayan")),
    ("Basilan", ("Isabela City", "Lamitan City", "Maluso", "Tipo-Tipo")),
    ("Sulu", ("Jolo", "Indanan", "Parang", "Patikul", "Talipao")),
    ("Tawi-Tawi", ("Bongao", "Sitangkai", "Simunul", "Panglima Sugala")),
)
SOURCES = ("crm", "voter_roll", "event", "manual")
NOTES = ("", "", "", "merged duplicate contact", "met at community assembly", "needs verification")


def _copy_text(value):
    """One value in COPY's text format; generated text holds no tab, newline or backslash."""
    if value is None:
        return r"\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    return str(value)


def _columns(model, field_names):
    """Quoted column names of the given fields, checked to cover every column of the model.

    A field added to the model later must make the seeder fail loudly, not
    leave a NOT NULL column to a COPY error.
    """
    concrete, given = {field.name for field in model._meta.concrete_fields}, set(field_names)
    if concrete != given:
        raise CommandError(
            f"seed_demo does not match {model._meta.label}: missing {sorted(concrete - given)}, unknown {sorted(given - concrete)}"
        )
    quote = connection.ops.quote_name
    return ", ".join(quote(model._meta.get_field(name).column) for name in field_names)


def _uuid4(rng):
    """A version-4 UUID drawn from rng, so that it is reproducible."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


MEMBER_FIELDS = (
    "id",
    "member_code",
    "full_name",
    "district",
    "municipality",
    "province",
    "is_active",
    "joined_on",
    "created_at",
)


def member_rows(rng, count):
    """Yield the values of the members, ids 1..count (order of MEMBER_FIELDS)."""
    for member_id in range(1, count + 1):
        province, municipalities = rng.choice(PLACES)
        yield (
            member_id,
            f"BMP-{member_id:06d}",
            f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            f"District {rng.randint(1, 3)}",
            rng.choice(municipalities),
            province,
            rng.random() < 0.93,
            (EPOCH - datetime.timedelta(days=rng.randint(0, 2000))).date(),
            EPOCH + datetime.timedelta(seconds=rng.randint(0, 86_400 * 30)),
        )


LINK_FIELDS = (
    "id",
    "person_uuid",
    "full_name",
    "email",
    "phone",
    "source",
    "crm_contact_id",
    "voter_id",
    "confidence",
    "is_verified",
    "notes",
    "created_at",
    "updated_at",
    MEMBER_FIELD,
)


def link_rows(rng, count, member_count):
    """Yield the values of the person links, ids 1..count (order of LINK_FIELDS)."""
    for link_id in range(1, count + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        source = rng.choice(SOURCES)
        has_member = member_count and rng.random() < SHARE_WITH_MEMBER
        created = EPOCH + datetime.timedelta(seconds=rng.randint(0, 86_400 * 600))
        yield (
            link_id,
            _uuid4(rng),
            f"{first} {last}",
            f"{first}.{last}.{link_id}@example.org".lower(),
            f"+639{rng.randint(100_000_000, 999_999_999)}" if rng.random() < 0.7 else "",
            source,
            f"CRM-{rng.randint(1, 10**9):09d}" if source == "crm" else None,
            # Unique by construction: derived from the row id.
            f"VR-{link_id:09d}" if source == "voter_roll" else None,
            round(rng.uniform(0.5, 1.0), 3),
            rng.random() < 0.4,
            rng.choice(NOTES),
            created,
            created + datetime.timedelta(seconds=rng.randint(0, 86_400 * 90)),
            rng.randint(1, member_count) if has_member else None,
        )


def copy_rows(cursor, model, field_names, rows, on_progress=None):
    """COPY rows into the model's table in text chunks; return how many were sent."""
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"COPY {table} ({_columns(model, field_names)}) FROM STDIN"
    sent = 0
    with cursor.copy(sql) as copy:
        lines = []
        for row in rows:
            lines.append("\t".join(map(_copy_text, row)))
            sent += 1
            if len(lines) == CHUNK_ROWS:
                copy.write("\n".join(lines) + "\n")
                lines.clear()
                if on_progress and sent % PROGRESS_EVERY == 0:
                    on_progress(sent)
        if lines:
            copy.write("\n".join(lines) + "\n")
    return sent


class Command(BaseCommand):
    help = "Replace the members and person links with a deterministic demo data set."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=200_000, help="person links to create")
        parser.add_argument("--members", type=int, default=2_000, help="members to create")
        parser.add_argument("--seed", type=int, default=42, help="random seed")
        parser.add_argument("--if-empty", action="store_true", help="do nothing if person links already exist")

    def handle(self, *args, rows, members, seed, if_empty, **options):
        if rows < 0 or members < 0:
            raise CommandError("--rows and --members must not be negative")
        if if_empty and PersonLink.objects.exists():
            self.stdout.write(f"already seeded: {PersonLink.objects.count()} rows")
            return

        started = time.perf_counter()
        rng = random.Random(seed)
        quote = connection.ops.quote_name
        link_table = PersonLink._meta.db_table
        member_table = Member._meta.db_table

        def progress(sent):
            self.stdout.write(f"  {sent} / {rows} person_links")

        # One transaction: a failed load leaves the previous data in place.
        with transaction.atomic(), connection.cursor() as cursor:
            # CASCADE also empties the audit rows that point at the links.
            cursor.execute(f"TRUNCATE {quote(link_table)}, {quote(member_table)} RESTART IDENTITY CASCADE")
            copy_rows(cursor, Member, MEMBER_FIELDS, member_rows(rng, members))
            copy_rows(cursor, PersonLink, LINK_FIELDS, link_rows(rng, rows, members), progress)
            # COPY wrote explicit ids, so move the sequences past them.
            for table in (member_table, link_table):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence(%s, 'id'), COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {quote(table)}",
                    [table],
                )
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {quote(member_table)}, {quote(link_table)}")

        elapsed = time.perf_counter() - started
        rate = rows / elapsed if elapsed else 0
        self.stdout.write(f"seeded {rows} person_links and {members} members in {elapsed:.2f} s ({rate:.0f} rows/s)")
