from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("<str:alias>/items", views.create),
    path("<str:alias>/items/<int:pk>/bump", views.bump),
    path("<str:alias>/items/<int:pk>", views.show),
    path("<str:alias>/count", views.count),
]
