"""``manage.py seed_bigapp --orders N``: a small production's worth of rows, written through the models' own code.

Every row goes through its model's ``save()`` and signals with the values the app itself
writes (prices before order lines, billing accounts before invoices, dashboards in the
current layout), so the seed proves the models work when given what they expect.
"""

import random
import secrets
from datetime import date, timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction
from django.test.utils import override_settings

from accounts.models import ApiKey, BillingAccount, Member, Organization, Team
from catalog.models import Brand, Category, Price, PriceRule, Product, StockLevel, Variant, Warehouse
from ops.models import Dashboard, ExportJob, Job, Notification, Webhook
from sales.models import Address, Coupon, Customer, Invoice, Order, OrderLine, Payment, Shipment

SIZES = ["S", "M", "L"]
COLOURS = ["red", "green", "blue", "black"]


class Command(BaseCommand):
    help = "Write organizations, a catalog and N orders with their lines, payments, invoices and shipments."

    def add_arguments(self, parser):
        parser.add_argument("--orders", type=int, default=200)
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument("--if-empty", action="store_true", help="do nothing when orders exist already")

    def handle(self, *args, orders: int, seed: int, if_empty: bool, **options) -> None:
        if if_empty and Order.objects.exists():
            self.stdout.write("seed: orders exist, nothing written")
            return
        rng = random.Random(seed)
        with transaction.atomic():
            members = self._accounts(rng)
            variants, warehouses = self._catalog(rng)
            self._sales(rng, orders, variants, warehouses)
            self._ops(rng, members)
        self.stdout.write(f"seed: {orders} orders written")

    def _accounts(self, rng: random.Random) -> list[Member]:
        members = []
        for n in range(3):
            org = Organization.objects.create(name=f"Org {n}", slug=f"org-{n}", plan=["free", "team", "enterprise"][n], seats=5 + n)
            BillingAccount.objects.create(organization=org, vat_number=f"NL{n:09d}B01", payment_terms_days=14 * (n + 1))
            teams = [Team.objects.create(organization=org, name=name) for name in ("ops", "sales")]
            for m in range(4):
                team = rng.choice([*teams, None])
                member = Member.objects.create(organization=org, team=team, email=f"m{m}@org{n}.example", name=f"Member {n}.{m}")
                ApiKey.objects.create(member=member, prefix=secrets.token_hex(4), hashed=secrets.token_hex(32))
                members.append(member)
        return members

    def _catalog(self, rng: random.Random) -> tuple[list[Variant], list[Warehouse]]:
        root = Category.objects.create(slug="all", name="All")
        leaves = []
        for name in ("tools", "garden", "kitchen"):
            parent = Category.objects.create(parent=root, slug=name, name=name.title())
            leaves += [Category.objects.create(parent=parent, slug=f"{name}-{k}", name=f"{name} {k}") for k in range(2)]
        brands = [Brand.objects.create(name=f"Brand {b}", country=rng.choice(["NL", "DE", "FR"])) for b in range(4)]
        PriceRule.objects.create(name="red things", conditions={"colour": "red"}, percent_off=10)
        PriceRule.objects.create(name="large", conditions={"size": "L"}, percent_off=5)
        warehouses = [Warehouse.objects.create(code=f"WH{w}", name=f"Warehouse {w}", country="NL") for w in range(2)]
        variants = []
        for p in range(30):
            colour = rng.choice(COLOURS)
            product = Product.objects.create(
                sku=f"SKU-{p:05d}", name=f"Product {p}", category=rng.choice(leaves), brand=rng.choice([*brands, None]),
                status=rng.choice(["draft", "active", "active", "retired"]), attributes={"colour": colour},
            )
            for size in SIZES:
                variant = Variant.objects.create(product=product, code=f"SKU-{p:05d}-{size}", options={"size": size, "colour": colour})
                for currency in ("EUR", "USD"):
                    Price.objects.create(variant=variant, currency=currency, amount=Decimal(rng.randint(100, 99_00)) / 100)
                for warehouse in warehouses:
                    StockLevel.objects.create(warehouse=warehouse, variant=variant, quantity=rng.randint(0, 50))
                variants.append(variant)
        return variants, warehouses

    def _sales(self, rng: random.Random, count: int, variants: list[Variant], warehouses: list[Warehouse]) -> None:
        organizations = list(Organization.objects.all())
        customers = []
        for c in range(max(1, count // 4)):
            customer = Customer.objects.create(email=f"c{c}@customers.example", name=f"Customer {c}", organization=rng.choice([*organizations, None]))
            Address.objects.create(customer=customer, kind="billing", line1=f"{c} Main Street", city="Utrecht", country="NL")
            customers.append(customer)
        for c in range(5):
            Coupon.objects.create(code=f"SAVE{c}", percent=5 * (c + 1))
        for o in range(count):
            customer = rng.choice(customers)
            order = Order.objects.create(customer=customer, currency=rng.choice(["EUR", "USD"]))
            total = Decimal(0)
            for variant in rng.sample(variants, rng.randint(1, 3)):
                line = OrderLine.objects.create(order=order, variant=variant, quantity=rng.randint(1, 4))
                total += line.unit_price * line.quantity
            order.total = total
            order.status = rng.choice(["open", "paid", "shipped"])
            order.save(update_fields=["total", "status"])
            if order.status != "open":
                Payment.objects.create(order=order, method=rng.choice(["card", "transfer"]), amount=total)
            if customer.organization_id is not None:
                Invoice.objects.create(order=order, number=f"INV-{o:06d}", issued_on=date.today() - timedelta(days=rng.randint(0, 60)))
            if order.status == "shipped":
                Shipment.objects.create(order=order, warehouse=rng.choice(warehouses), tracking=f"TR{o:08d}", weight_grams=rng.randint(100, 5000))

    def _ops(self, rng: random.Random, members: list[Member]) -> None:
        for member in members:
            Notification.objects.create(member=member, channel=rng.choice(["email", "sms", "push"]), body=f"hello {member.name}")
            Dashboard.objects.create(member=member, title="Home", layout={"version": 2, "widgets": ["orders", "stock"]})
        # A one-off command has no EXPORTS_DIR (only the web process does): the seed gives the web's.
        with override_settings(EXPORTS_DIR="/tmp/bigapp-exports"):
            ExportJob.objects.create(requested_by=members[0], kind="orders")
        for organization in Organization.objects.all():
            Webhook.objects.create(organization=organization, url=f"https://hooks.example/{organization.slug}", secret=secrets.token_hex(16), events=["order.created"])
        Job.objects.bulk_create([Job(kind=rng.choice(["reindex", "notify"]), payload={"n": n}) for n in range(20)])
