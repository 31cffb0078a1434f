"""Who uses the shop: organizations, their teams and members, and what belongs to a member."""

from django.conf import settings
from django.db import models


def default_timezone() -> str:
    """A new profile's time zone: the deployment's DEFAULT_TIMEZONE setting."""
    return settings.DEFAULT_TIMEZONE


class Organization(models.Model):
    PLANS = [("free", "Free"), ("team", "Team"), ("enterprise", "Enterprise")]

    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    plan = models.CharField(max_length=20, choices=PLANS, default="free")
    seats = models.PositiveIntegerField(default=5)
    preferences = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(seats__gte=1), name="accounts_organization_seats_positive")]

    def __str__(self) -> str:
        return self.name


class Team(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=80)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="accounts_team_unique_name")]

    def __str__(self) -> str:
        return self.name


class Member(models.Model):
    ROLES = [("owner", "Owner"), ("admin", "Admin"), ("member", "Member")]

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="members")
    # Nullable: a member may belong to no team yet.
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="members")
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=120)
    role = models.CharField(max_length=10, choices=ROLES, default="member")
    joined_at = models.DateTimeField(auto_now_add=True)

    def save(self, *args, **kwargs) -> None:
        # A member's team must be one of its organization's: the admin can pick any team.
        if self.team_id is not None and self.team.organization_id != self.organization_id:
            raise ValueError(f"team {self.team} belongs to another organization")
        super().save(*args, **kwargs)

    def __str__(self) -> str:
        return self.email


class Profile(models.Model):
    """One per member, created by a signal when the member is (accounts/signals.py)."""

    member = models.OneToOneField(Member, on_delete=models.CASCADE, related_name="profile")
    timezone = models.CharField(max_length=64, default=default_timezone)
    bio = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"profile of {self.member}"


class BillingAccount(models.Model):
    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="billing")
    vat_number = models.CharField(max_length=20, blank=True)
    payment_terms_days = models.PositiveSmallIntegerField(default=30)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(payment_terms_days__lte=120), name="accounts_billing_terms_at_most_120")
        ]


class ApiKey(models.Model):
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=8, unique=True)
    hashed = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
