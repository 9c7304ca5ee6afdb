from django.urls import path

from privacy import views

app_name = "privacy"

urlpatterns = [
    path("settings/account/", views.account_settings, name="account"),
    path("settings/account/export/", views.request_export, name="request_export"),
    path("settings/account/export/status/", views.export_status, name="export_status"),
    path("settings/account/export/<id:export_id>/download/", views.download_export, name="download_export"),
    path("settings/account/delete/", views.delete_account, name="delete_account"),
]
