"""A real column for "the last refresh failed", instead of a marker in the lease owner."""

from django.db import migrations, models

FAILED_MARKER = "failed"  # what the lease owner held after a failed refresh, until its cooldown ended


def marker_to_column(apps, schema_editor):
    OAuthToken = apps.get_model("oauth_integration", "OAuthToken")
    OAuthToken.objects.filter(refresh_lease_owner=FAILED_MARKER).update(
        refresh_failed_until=models.F("refresh_lease_until"), refresh_lease_owner="", refresh_lease_until=None
    )


def column_to_marker(apps, schema_editor):
    OAuthToken = apps.get_model("oauth_integration", "OAuthToken")
    OAuthToken.objects.filter(refresh_failed_until__isnull=False, refresh_lease_owner="").update(
        refresh_lease_owner=FAILED_MARKER, refresh_lease_until=models.F("refresh_failed_until")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("oauth_integration", "0004_last_called_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="oauthtoken",
            name="refresh_failed_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(marker_to_column, column_to_marker),
    ]
