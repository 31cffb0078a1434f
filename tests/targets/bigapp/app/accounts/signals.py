"""Every member gets a profile the moment it is created: the profile table is unique per member."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from accounts.models import Member, Profile


@receiver(post_save, sender=Member)
def create_profile(sender, instance: Member, created: bool, raw: bool = False, **kwargs) -> None:
    if created and not raw:
        Profile.objects.create(member=instance)
