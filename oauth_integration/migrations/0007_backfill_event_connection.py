"""Point every existing event at its customer's connection; keep every event.

An event whose customer has no connection row any more (removed by hand) gets a revoked
connection without tokens, so that its history stays readable in the admin.
"""

from django.db import migrations, models


def link_events(apps, schema_editor):
    OAuthToken = apps.get_model("oauth_integration", "OAuthToken")
    ConnectionEvent = apps.get_model("oauth_integration", "ConnectionEvent")
    orphans = (
        ConnectionEvent.objects.filter(connection__isnull=True)
        .exclude(customer_identifier__in=OAuthToken.objects.values("customer_identifier"))
        .values_list("customer_identifier", flat=True)
        .distinct()
    )
    OAuthToken.objects.bulk_create(
        [OAuthToken(customer_identifier=customer, status="revoked") for customer in orphans], batch_size=500
    )
    connection = OAuthToken.objects.filter(customer_identifier=models.OuterRef("customer_identifier")).values("pk")
    ConnectionEvent.objects.filter(connection__isnull=True).update(connection=models.Subquery(connection[:1]))


def unlink_events(apps, schema_editor):
    ConnectionEvent = apps.get_model("oauth_integration", "ConnectionEvent")
    OAuthToken = apps.get_model("oauth_integration", "OAuthToken")
    customer = OAuthToken.objects.filter(pk=models.OuterRef("connection_id")).values("customer_identifier")
    ConnectionEvent.objects.update(customer_identifier=models.Subquery(customer[:1]))


class Migration(migrations.Migration):
    dependencies = [
        ("oauth_integration", "0006_event_connection"),
    ]

    operations = [
        migrations.RunPython(link_events, unlink_events),
    ]
