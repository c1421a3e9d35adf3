"""Events are found through their connection: the foreign key is required, the copied identifier goes."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("oauth_integration", "0007_backfill_event_connection"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="connectionevent", name="event_customer_recent"),
        migrations.RemoveField(model_name="connectionevent", name="customer_identifier"),
        migrations.AlterField(
            model_name="connectionevent",
            name="connection",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="events", to="oauth_integration.oauthtoken"
            ),
        ),
        migrations.AddIndex(
            model_name="connectionevent",
            index=models.Index(fields=["connection", "-created_at"], name="event_connection_recent"),
        ),
    ]
