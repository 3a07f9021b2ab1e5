"""POST -> redirect -> GET views on a database alias named in the URL."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Item


@csrf_exempt
def create(request: HttpRequest, alias: str) -> HttpResponse:
    item = Item.objects.using(alias).create(name=request.POST["name"], value=1)
    return HttpResponseRedirect(f"/{alias}/items/{item.pk}")


@csrf_exempt
def bump(request: HttpRequest, alias: str, pk: int) -> HttpResponse:
    Item.objects.using(alias).filter(pk=pk).update(value=int(request.POST["value"]))
    return HttpResponseRedirect(f"/{alias}/items/{pk}")


def show(request: HttpRequest, alias: str, pk: int) -> HttpResponse:
    item = Item.objects.using(alias).filter(pk=pk).first()
    if item is None:
        return JsonResponse({"found": False}, status=404)
    return JsonResponse({"found": True, "name": item.name, "value": item.value})


def count(request: HttpRequest, alias: str) -> HttpResponse:
    return JsonResponse({"count": Item.objects.using(alias).count()})
